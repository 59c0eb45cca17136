"""detkit's YOLOv3-tiny with pjreddie's COCO weights against OpenCV's darknet reader, on real photos.

The reference (tests/fixtures/yolo/opencv_reference_yolov3_tiny.json, see its README) was made with
OpenCV alone: blobFromImage (plain bilinear resize of the BGR image to 416, to RGB, /255), score =
objectness x best class probability > 0.25, one class-agnostic NMS at 0.45, boxes xywh in pixels
of the original image. detkit gets the same 416x416 input (cv2.resize: the resize is OpenCV's, the
network and the decoding are detkit's) and must give the same labels, scores within 1e-3 and boxes
within 1 px. OpenCV 4.x's readNetFromDarknet is also run here on the same files as a second check.
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


def _detect_on_opencv_input(model: YOLOv3, name: str) -> dict[str, torch.Tensor]:
    """detkit on blobFromImage's 416x416 input; boxes scaled back to the original image."""
    bgr = cv2.imread(str(IMAGES / name))
    height, width = bgr.shape[:2]
    blob = cv2.dnn.blobFromImage(bgr, 1 / 255.0, (416, 416), swapRB=True, crop=False)
    with torch.inference_mode():
        prediction = model([torch.from_numpy(blob[0])])[0][0]
    boxes = prediction["boxes"] * torch.tensor([width / 416, height / 416] * 2)
    return {**prediction, "boxes": boxes}


def _assert_same(
    name: str, labels: list[str], scores: torch.Tensor, boxes: torch.Tensor, *, score_tol: float, box_tol: float
) -> None:
    ref_labels, ref_scores, ref_boxes = _reference(name)
    assert labels == ref_labels, f"{name}: labels {labels} vs reference {ref_labels}"
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=score_tol, msg=f"{name}: scores")
    # The reference is rounded to 0.1 px.
    torch.testing.assert_close(boxes, ref_boxes, rtol=0, atol=box_tol, msg=f"{name}: boxes")


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_detkit_equals_opencv_reference(tiny_coco_model: YOLOv3, name: str):
    prediction = _detect_on_opencv_input(tiny_coco_model, name)
    labels = [tiny_coco_model.class_names[i] for i in prediction["labels"].tolist()]
    _assert_same(name, labels, prediction["scores"], prediction["boxes"], score_tol=1e-3, box_tol=1.0)


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_detkit_own_resize_is_close_to_reference(tiny_coco_model: YOLOv3, name: str):
    # detkit resizes the float image itself (bilinear, no uint8 rounding): close, not bit-equal.
    with torch.inference_mode():
        prediction = tiny_coco_model([load_rgb(name)])[0][0]
    labels = [tiny_coco_model.class_names[i] for i in prediction["labels"].tolist()]
    _assert_same(name, labels, prediction["scores"], prediction["boxes"], score_tol=0.03, box_tol=3.0)


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
        _assert_same(name, labels, scores, boxes, score_tol=1e-3, box_tol=0.1)


def test_letterbox_on_original_matches_resize_on_padded_square(tiny_coco_model: YOLOv3):
    # Letterboxing dog.jpg (768x576) to 416 scales it by 416/768 and pads 52 grey rows above and
    # below: the same network input as resizing the image padded to 768x768 with 96 grey rows
    # above and below. The two runs must agree once each maps its boxes back.
    image = load_rgb("dog.jpg")
    padded = torch.full((3, 768, 768), 0.5)
    padded[:, 96 : 96 + 576] = image
    tiny_coco_model.preprocess.resize_mode = "letterbox"
    try:
        with torch.inference_mode():
            letterboxed = tiny_coco_model([image])[0][0]
    finally:
        tiny_coco_model.preprocess.resize_mode = "resize"
    with torch.inference_mode():
        resized = tiny_coco_model([padded])[0][0]
    resized_boxes = (resized["boxes"] - torch.tensor([0.0, 96.0, 0.0, 96.0])).clamp(min=0)
    resized_boxes[:, 1::2] = resized_boxes[:, 1::2].clamp(max=576)
    assert letterboxed["labels"].tolist() == resized["labels"].tolist()
    torch.testing.assert_close(letterboxed["scores"], resized["scores"], rtol=0, atol=0.02)
    torch.testing.assert_close(letterboxed["boxes"], resized_boxes, rtol=0, atol=3.0)
    # And the letterboxed detections are the reference objects (same labels, boxes overlapping).
    ref_labels, _, ref_boxes = _reference("dog.jpg")
    names = [tiny_coco_model.class_names[i] for i in letterboxed["labels"].tolist()]
    for label, box in zip(ref_labels[:3], ref_boxes[:3]):
        matches = [k for k, n in enumerate(names) if n == label]
        assert matches and box_iou(box[None], letterboxed["boxes"][matches]).max() > 0.7, label
