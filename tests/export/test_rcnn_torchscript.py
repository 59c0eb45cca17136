"""TorchScript export of Faster R-CNN, Mask R-CNN and Keypoint R-CNN (``detkit.export(...,
format="torchscript")``, a trace of :class:`detkit.export.rcnn.RCNNExport`): the saved file runs in
a fresh process and gives the eager model's detections (Keypoint R-CNN's loaded with only ``import
detkit``, :func:`detkit.export.load_torchscript`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from export_testing import blank_image
from rcnn_export_testing import INPUT_SIZE, assert_matching_detections, build_model, photo_at, unpad_outputs

import detkit
import detkit.ops  # noqa: F401  (registers torch.ops.detkit.*)

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.detkit, "batched_nms"), reason="needs detkit._C")

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: load the file (detkit.ops registers detkit's compiled ops), run it.
_RUNNER = """
import sys, torch
import detkit.ops
module = torch.jit.load(sys.argv[1])
images = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    outputs = module(images)
torch.save([o.contiguous() for o in outputs], sys.argv[3])
"""


def _run_fresh(path: Path, images: torch.Tensor, tmp_path: Path) -> list[torch.Tensor]:
    torch.save(images, tmp_path / "images.pt")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", _RUNNER, str(path), str(tmp_path / "images.pt"), str(tmp_path / "out.pt")],
                   check=True, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    return torch.load(tmp_path / "out.pt", weights_only=True)


@pytest.mark.parametrize("family", ["faster_rcnn_r50_fpn", "mask_rcnn_r50_fpn"])
def test_torchscript_file_in_fresh_process_equals_eager(family, tmp_path):
    model = build_model(family)
    path = detkit.export(model, tmp_path / f"{family}.torchscript", format="torchscript", image_size=INPUT_SIZE,
                         batch_size=2)  # fmt: skip
    names = ("boxes", "scores", "labels", "num_detections") + (("masks",) if family.startswith("mask") else ())
    for images in ([photo_at(0), photo_at(1), blank_image(*INPUT_SIZE)], [photo_at(2)]):
        with torch.no_grad():
            expected, _ = model(images)
        actual = unpad_outputs(tuple(_run_fresh(path, torch.stack(images), tmp_path)), names)
        assert len(actual) == len(images)
        for reference, detections in zip(expected, actual):
            assert_matching_detections(reference, detections)
        assert len(expected[0]["labels"]) > 0


# Only ``import detkit``: detkit.export.load_torchscript imports the package, which registers
# every op a saved file holds (Keypoint R-CNN's detkit_export::heatmaps_to_keypoints too).
_LOADER = """
import sys, torch
import detkit
module, metadata = detkit.export.load_torchscript(sys.argv[1])
images = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    outputs = module(images)
torch.save({"names": metadata["output_names"], "outputs": [o.contiguous() for o in outputs]}, sys.argv[3])
"""


def test_keypoint_rcnn_torchscript_file_loads_with_import_detkit_in_fresh_process(tmp_path):
    """The traced Keypoint R-CNN holds ``detkit_export::heatmaps_to_keypoints``: a fresh process
    that only imports detkit loads it (:func:`detkit.export.load_torchscript`) and gets the eager
    boxes, keypoints and keypoint scores."""
    model = build_model("keypoint_rcnn_r50_fpn")
    path = detkit.export(model, tmp_path / "keypoint_rcnn.torchscript", format="torchscript", image_size=INPUT_SIZE,
                         batch_size=2)  # fmt: skip
    images = [photo_at(0), photo_at(2), blank_image(*INPUT_SIZE)]
    torch.save(torch.stack(images), tmp_path / "images.pt")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", _LOADER, str(path), str(tmp_path / "images.pt"), str(tmp_path / "out.pt")],
                   check=True, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    saved = torch.load(tmp_path / "out.pt", weights_only=True)
    assert tuple(saved["names"][-2:]) == ("keypoints", "keypoint_scores")
    actual = unpad_outputs(tuple(saved["outputs"]), tuple(saved["names"]))
    with torch.no_grad():
        expected, _ = model(images)
    assert [len(d["labels"]) > 0 for d in expected] == [True, True, False]
    for reference, detections in zip(expected, actual):
        assert_matching_detections(reference, detections)  # keypoints within 0.01 px, their scores 1e-4


def test_load_torchscript_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="load_torchscript: no such file"):
        detkit.export.load_torchscript(tmp_path / "missing.torchscript")
