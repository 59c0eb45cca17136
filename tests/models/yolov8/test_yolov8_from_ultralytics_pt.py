"""An ultralytics .pt (written by ultralytics' own saving) read and converted in a process without
ultralytics gives ultralytics' detections on the sample photos."""

from __future__ import annotations

import os
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import cv2
import torch

from test_yolov8_parity import _ultralytics_detect
from yolov8_testing import SAMPLES, import_ultralytics, ultralytics_model

REPO = Path(__file__).resolve().parents[3]

# Everything detkit does with the file, in a fresh interpreter that must never import ultralytics.
DETECT = """
import sys, cv2, torch
from detkit.models.convert.ultralytics import convert_ultralytics, parse_arch
from detkit.models.convert.ultralytics_checkpoint import read_ultralytics_checkpoint
from detkit.models.detectors.yolov8 import YOLOv8, yolov8_parts
path, arch, out, samples = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
checkpoint = convert_ultralytics(read_ultralytics_checkpoint(path), arch)
model = YOLOv8(**yolov8_parts(*parse_arch(arch), checkpoint["meta"]["num_classes"]))
model.load_state_dict(checkpoint["model"])
model.eval().head.configure(score_thresh=0.05, nms_thresh=0.7, multi_label=False, detections_per_img=300)
results = {}
for imgsz in (320, 256):
    model.preprocess.input_size = (imgsz, imgsz)
    for sample in samples:
        image = torch.from_numpy(cv2.imread(sample)[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            (prediction,), _ = model([image])
        results[f"{imgsz}/{sample}"] = {k: prediction[k] for k in ("boxes", "scores", "labels")}
assert "ultralytics" not in sys.modules, sorted(m for m in sys.modules if m.startswith("ultralytics"))
torch.save(results, out)
"""


def test_saved_pt_converted_without_ultralytics_detects_as_ultralytics(tmp_path):
    cfg = import_ultralytics("cfg")
    torch_utils = import_ultralytics("utils.torch_utils")
    arch = "yolov8n"
    reference = ultralytics_model(arch, cls_bias=-4.0)  # random weights, scores raised to detect
    reference.args = cfg.get_cfg()
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    torch.save({"epoch": 0, "model": None, "ema": deepcopy(reference).half(), "updates": 1,
                "train_args": vars(cfg.get_cfg()), "optimizer": None}, last)  # fmt: skip
    torch_utils.strip_optimizer(last, str(best))  # ultralytics' final best.pt, written by ultralytics
    loaded = deepcopy(reference).half().float().eval()  # what ultralytics' attempt_load_weights runs

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "detections.pt"
    samples = [str(p) for p in SAMPLES if p.suffix == ".jpg"]
    done = subprocess.run([sys.executable, "-c", DETECT, str(best), arch, str(out), *samples], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = torch.load(out, map_location="cpu", weights_only=True)
    compared = 0
    for imgsz in (320, 256):
        for sample in samples:
            _, det = _ultralytics_detect(loaded, cv2.imread(sample), imgsz, 0.05, False)
            prediction = results[f"{imgsz}/{sample}"]
            _assert_same_detections(prediction, det, f"{imgsz} px, {Path(sample).name}")
            compared += len(det)
    assert compared > 0


def _assert_same_detections(prediction: dict[str, torch.Tensor], det: torch.Tensor, where: str) -> None:
    """Same detections in the same order, except that detections whose scores are within 1e-5 of
    each other (a near-tie that float noise of 1e-7 may order either way) may trade places."""
    assert len(prediction["scores"]) == len(det), where
    torch.testing.assert_close(prediction["scores"], det[:, 4], rtol=0, atol=1e-5)
    unmatched = list(range(len(det)))
    for score, label, box in zip(prediction["scores"], prediction["labels"], prediction["boxes"]):
        match = next(
            (j for j in unmatched if abs(float(det[j, 4] - score)) <= 1e-5 and int(det[j, 5]) == int(label)
             and float((det[j, :4] - box).abs().max()) <= 1e-3),
            None,
        )  # fmt: skip
        assert match is not None, f"{where}: detkit's {label.item()} {box.tolist()} ({score:.6f}) is not ultralytics'"
        unmatched.remove(match)
