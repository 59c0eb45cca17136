"""detkit's YOLOv3-tiny with pjreddie's COCO weights against OpenCV's darknet reader, on real photos.

The reference (tests/fixtures/yolo/opencv_reference_yolov3_tiny.json, see its README) was made with
OpenCV alone: blobFromImage (OpenCV's 8-bit bilinear resize of the BGR image to 416, to RGB, /255),
score = objectness x best class probability > 0.25, one class-agnostic NMS at 0.45, boxes xywh in
pixels of the original image. detkit, given the photo itself (its default ``resize_mode="resize"``
reproduces blobFromImage), must give the same labels, scores within 1e-4 and boxes within 0.01 px
of OpenCV 4.x's readNetFromDarknet run here on the same files, and the stored reference to its
rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detkit.models.detectors.yolo import YOLOv3
from detkit.models.zoo import YOLO_DATA_DIR
from detkit.ops import box_iou
from yolo_testing import IMAGES, YOLO_DATA, load_rgb

pytestmark = pytest.mark.network
IMAGE_NAMES = ["dog.jpg", "person.jpg"]
REFERENCE = json.loads((YOLO_DATA / "opencv_reference_yolov3_tiny.json").read_text())


def _xyxy(xywh: list[list[float]]) -> torch.Tensor:
    boxes = torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4)
    return torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


def _reference(name: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    entries = REFERENCE[name]
    scores = torch.tensor([e["score"] for e in entries])
    return [e["label"] for e in entries], scores, _xyxy([e["xywh"] for e in entries])


def _assert_same(
    name: str, labels: list[str], scores: torch.Tensor, boxes: torch.Tensor, *, score_tol: float, box_tol: float
) -> None:
    ref_labels, ref_scores, ref_boxes = _reference(name)
    assert labels == ref_labels, f"{name}: labels {labels} vs reference {ref_labels}"
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=score_tol, msg=f"{name}: scores")
    # The reference is rounded to 0.1 px.
    torch.testing.assert_close(boxes, ref_boxes, rtol=0, atol=box_tol, msg=f"{name}: boxes")


def _detect(model: YOLOv3, name: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """detkit on the photo as a float RGB tensor (the file's bytes / 255)."""
    with torch.inference_mode():
        prediction = model([load_rgb(name)])[0][0]
    return [model.class_names[i] for i in prediction["labels"].tolist()], prediction["scores"], prediction["boxes"]


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_detkit_from_the_photo_equals_the_stored_reference(tiny_coco_model: YOLOv3, name: str):
    # The reference is rounded to 1e-4 in score and its x, y, w, h to 0.1 px (x2 = x + w: 0.1).
    _assert_same(name, *_detect(tiny_coco_model, name), score_tol=1e-4, box_tol=0.11)


def opencv_darknet_detect(
    net: cv2.dnn.Net, bgr: np.ndarray, names: list[str]
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The reference recipe with OpenCV's DNN module (see the module docstring)."""
    height, width = bgr.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(bgr, 1 / 255.0, (416, 416), swapRB=True, crop=False))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))  # [N, 5 + C]: cx cy w h obj cls*obj
    classes, scores = rows[:, 5:].argmax(1), rows[:, 5:].max(1)
    keep = scores > 0.25
    cxcywh = rows[keep, :4] * np.array([width, height, width, height], dtype=np.float32)
    xywh = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, 2:]], 1)
    order = cv2.dnn.NMSBoxes(xywh.tolist(), scores[keep].tolist(), 0.25, 0.45)
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    return [names[i] for i in classes[keep][order]], torch.from_numpy(scores[keep][order]), _xyxy(xywh[order].tolist())


def test_opencv_darknet_reader_gives_the_reference(tiny_coco_model: YOLOv3, tiny_weights_path: Path):
    net = cv2.dnn.readNetFromDarknet(str(YOLO_DATA_DIR / "yolov3-tiny.cfg"), str(tiny_weights_path))
    for name in IMAGE_NAMES:
        labels, scores, boxes = opencv_darknet_detect(net, cv2.imread(str(IMAGES / name)), tiny_coco_model.class_names)
        _assert_same(name, labels, scores, boxes, score_tol=1e-4, box_tol=0.11)
        # detkit from the photo against OpenCV from the photo, in this run.
        ours, our_scores, our_boxes = _detect(tiny_coco_model, name)
        assert ours == labels, name
        torch.testing.assert_close(our_scores, scores, rtol=0, atol=1e-4, msg=f"{name}: scores")
        torch.testing.assert_close(our_boxes, boxes, rtol=0, atol=0.01, msg=f"{name}: boxes")


def test_letterbox_finds_the_reference_objects(tiny_coco_model: YOLOv3):
    # darknet's detector test letterboxes: dog.jpg (768x576) becomes 416x312 at 52 rows from the
    # top. The network sees another input than OpenCV's resize, so scores differ, but the objects
    # and, once mapped back, their boxes are the same.
    tiny_coco_model.preprocess.resize_mode = "letterbox"
    try:
        names, _, boxes = _detect(tiny_coco_model, "dog.jpg")
    finally:
        tiny_coco_model.preprocess.resize_mode = "resize"
    ref_labels, _, ref_boxes = _reference("dog.jpg")
    assert sorted(names) == sorted(ref_labels)
    for label, box in zip(ref_labels, ref_boxes):
        matches = [k for k, n in enumerate(names) if n == label]
        assert box_iou(box[None], boxes[matches]).max() > 0.7, label
