"""YOLOv8n and YOLO11n exported to ONNX give the eager model's detections in onnxruntime.

The weights are converted from a seeded ultralytics ``DetectionModel`` (tests/models/yolov8's
``ultralytics_model`` with spread weights and raised class biases, so random weights detect), the
score threshold set just above the best score on the blank image (nothing there, detections on
the photos). The file is checked (``onnx.checker``, standard domain only), run through
:class:`~detkit.apis.onnx_backend.ONNXDetector` (ultralytics' letterbox outside the graph, rect
per image as ultralytics' predictor, ``scale_boxes`` back) on the sample photos and the blank
image one at a time, then as one batch (different shapes: the square input), and again at a
second input size: same labels, scores within 1e-4, boxes within 0.01 px.
"""

from __future__ import annotations

import pytest
import torch
from export_testing import (
    assert_same_detections,
    assert_standard_onnx,
    blank_image,
    photos,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export_models import yolov8_model

from detkit.apis.onnx_backend import ONNXDetector
from detkit.export import export
from detkit.export.onnx_export import read_metadata

SIZE = (320, 320)
SECOND_SIZE = (256, 384)


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _eager(model: torch.nn.Module, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    with torch.no_grad():
        return [model([image])[0][0] for image in images]


@pytest.fixture(scope="module", params=["yolov8n", "yolo11n"])
def model_and_file(request, tmp_path_factory):
    arch = request.param
    model = yolov8_model(arch, SIZE)
    path = export(model, tmp_path_factory.mktemp(arch) / f"{arch}.onnx", dynamic=True)
    return model, path


def test_file_is_standard_onnx_with_letterbox_metadata(model_and_file):
    import onnx

    _, path = model_and_file
    assert_standard_onnx(path)
    metadata = read_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert metadata["family"] == "yolov8" and metadata["resize_mode"] == "letterbox"
    assert metadata["input_size"] == list(SIZE) and metadata["dynamic_batch"] and metadata["dynamic_size"]
    assert metadata["preprocess"]["kwargs"]["rect"] is True and metadata["size_multiple"] == 32


def test_onnxruntime_equals_eager_on_photos_and_blank(model_and_file):
    model, path = model_and_file
    images = photos()
    expected = _eager(model, images)
    assert sum(len(e["labels"]) for e in expected[:-1]) > 0 and len(expected[-1]["labels"]) == 0
    detector = ONNXDetector(path)
    assert_same_detections(expected, [detector([image])[0][0] for image in images])
    with torch.no_grad():
        batched = model(images)[0]  # different shapes: letterboxed to the square input
    assert_same_detections(batched, detector(images)[0])
    batch, _ = detector.preprocess([blank_image()])
    assert detector.run_batch(batch.tensor)["num_detections"].tolist() == [0]


def test_second_size_and_batch(model_and_file):
    model, path = model_and_file
    images = photos()[:2] * 2  # a batch of 4 images of two shapes
    model.preprocess.input_size = SECOND_SIZE
    try:
        with torch.no_grad():
            expected = model(images)[0]
    finally:
        model.preprocess.input_size = SIZE
    detector = ONNXDetector(path, input_size=SECOND_SIZE)
    assert detector.preprocess.input_size == SECOND_SIZE
    assert_same_detections(expected, detector(images)[0])
    with pytest.raises(ValueError, match="multiples of 32"):
        ONNXDetector(path, input_size=(300, 300))


def test_a_fixed_size_file_takes_the_full_letterbox(model_and_file, tmp_path):
    """Exported without ``dynamic``, the graph is fixed at the input size: the runtime letterboxes
    every image to it (ultralytics' ``auto=False``), as the eager model with ``rect=False``."""
    model, _ = model_and_file
    path = export(model, tmp_path / "fixed.onnx")
    images = photos()[:2]
    model.preprocess.rect = False
    try:
        expected = _eager(model, images)
    finally:
        model.preprocess.rect = True
    detector = ONNXDetector(path)
    assert detector.preprocess.rect is False
    assert_same_detections(expected, [detector([image])[0][0] for image in images])
