"""YOLOv3 head decoding, the detector's preprocessing maps, postprocessing options and fuse()."""

from __future__ import annotations

import pytest
import torch

from detkit.models.backbones.base import ShapeSpec
from detkit.models.dense_heads.yolo_head import YOLOv3Head, wh_iou
from detkit.models.zoo import build_yolov3
from yolo_testing import perturb_batchnorms


def _head(num_classes: int = 2) -> YOLOv3Head:
    return YOLOv3Head(
        {"p4": ShapeSpec(8, 16), "p5": ShapeSpec(8, 32)}, num_classes,
        anchors=((10, 20), (30, 30), (60, 40), (80, 100)), anchor_masks=((0, 1), (2, 3)), mid_channels=(8, 8),
    )  # fmt: skip


def test_decode_of_zero_logits_is_anchor_boxes_at_cell_centres():
    head = _head()
    raw = [torch.zeros(1, 2 * 7, 4, 6), torch.zeros(1, 2 * 7, 2, 3)]  # input 64 x 96
    boxes, objectness, classes = head.decode(raw, (64, 96))
    assert boxes.shape == (1, 2 * 24 + 2 * 6, 4) and classes.shape == (1, 60, 2)
    torch.testing.assert_close(objectness, torch.full((1, 60), 0.5))
    # Level p4, anchor 1 (30x30), row 2, col 5: centre ((5 + 0.5) * 16, (2 + 0.5) * 16).
    index = 1 * 24 + 2 * 6 + 5
    torch.testing.assert_close(boxes[0, index], torch.tensor([88 - 15, 40 - 15, 88 + 15, 40 + 15.0]))
    # Level p5, anchor 0 (60x40), row 1, col 0.
    index = 48 + 0 * 6 + 1 * 3 + 0
    torch.testing.assert_close(boxes[0, index], torch.tensor([16 - 30, 48 - 20, 16 + 30, 48 + 20.0]))


def test_decode_formula_with_offsets():
    head = _head(num_classes=1)
    raw = torch.zeros(1, 2 * 6, 1, 1)
    raw[0, :6, 0, 0] = torch.tensor([2.0, -1.0, 0.5, -0.25, 1.5, -2.0])  # anchor 0: tx ty tw th to tc
    boxes, objectness, classes = head.decode([raw, torch.zeros(1, 12, 1, 1)], (16, 16))
    cx, cy = torch.sigmoid(torch.tensor(2.0)) * 16, torch.sigmoid(torch.tensor(-1.0)) * 16
    w, h = 10 * torch.exp(torch.tensor(0.5)), 20 * torch.exp(torch.tensor(-0.25))
    torch.testing.assert_close(boxes[0, 0], torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    torch.testing.assert_close(objectness[0, 0], torch.sigmoid(torch.tensor(1.5)))
    torch.testing.assert_close(classes[0, 0, 0], torch.sigmoid(torch.tensor(-2.0)))


def test_wh_iou():
    iou = wh_iou(torch.tensor([[10.0, 20.0]]), torch.tensor([[10.0, 20.0], [20.0, 10.0], [5.0, 10.0]]))
    torch.testing.assert_close(iou, torch.tensor([[1.0, 100 / 300, 0.25]]))


def test_letterbox_mapping_is_exact():
    model = build_yolov3("tiny", 3, input_size=(128, 128), resize_mode="letterbox").eval()
    image = torch.rand(3, 50, 100)
    prepared, transform = model.preprocess.prepare(image, (128, 128))
    # 100x50 -> 128x64, centred: 32 grey rows above and below.
    torch.testing.assert_close(transform, torch.tensor([1.28, 1.28, 0.0, 32.0]))
    assert (prepared[:, :32] == 0.5).all() and (prepared[:, 96:] == 0.5).all()
    assert not (prepared[:, 32:96] == 0.5).all()
    # Boxes given in the network input come back to the image exactly (then clipped).
    boxes = torch.tensor([[[10.0, 20.0, 60.0, 70.0], [0.0, 0.0, 128.0, 128.0]]])
    class_probs = torch.tensor([[[1.0, 0, 0], [0, 0.9, 0]]])
    detections = model.head.select(boxes, torch.ones(1, 2), class_probs)
    result = model.preprocess.postprocess(detections, [(128, 128)], [(50, 100)])[0]
    # x / 1.28, (y - 32) / 1.28, clipped to the 100x50 image.
    torch.testing.assert_close(result["boxes"], torch.tensor([[7.8125, 0.0, 46.875, 29.6875], [0.0, 0.0, 100.0, 50.0]]))
    assert result["labels"].tolist() == [0, 1]


def test_resize_keeps_an_image_of_input_size_as_is():
    model = build_yolov3("tiny", 3, input_size=(64, 96)).eval()
    image = torch.rand(3, 64, 96)
    prepared, transform = model.preprocess.prepare(image, (64, 96))
    assert prepared is image and transform.tolist() == [1.0, 1.0, 0.0, 0.0]
    _, transform = model.preprocess.prepare(torch.rand(3, 32, 192), (64, 96))
    assert transform.tolist() == [0.5, 2.0, 0.0, 0.0]


def test_class_aware_versus_agnostic_nms_and_max_detections():
    model = build_yolov3("tiny", 2, input_size=(64, 64))
    model.head.score_thresh = 0.1
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0.5, 0, 10, 10], [30, 30, 40, 40]]])
    objectness = torch.tensor([[0.9, 0.8, 0.7]])
    classes = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    aware = model.head.select(boxes, objectness, classes)[0]
    assert aware["labels"].tolist() == [0, 1, 0]
    torch.testing.assert_close(aware["scores"], torch.tensor([0.9, 0.8, 0.7]))
    model.head.class_agnostic_nms = True
    agnostic = model.head.select(boxes, objectness, classes)[0]
    assert agnostic["labels"].tolist() == [0, 0] and agnostic["scores"].tolist() == pytest.approx([0.9, 0.7])
    model.head.detections_per_img = 1
    assert len(model.head.select(boxes, objectness, classes)[0]["boxes"]) == 1
    model.head.multi_label, model.head.detections_per_img, model.head.class_agnostic_nms = True, 100, False
    both = model.head.select(boxes, objectness, torch.full((1, 3, 2), 0.5))[0]
    assert sorted(both["labels"].tolist()) == [0, 0, 1, 1]


def test_detector_settings_are_deprecated_aliases_of_the_head_settings():
    with pytest.warns(DeprecationWarning, match="settings of its YOLOv3Head now"):
        model = build_yolov3("tiny", 2, input_size=(64, 64), score_thresh=0.1, max_detections=7)
    assert model.head.score_thresh == 0.1 and model.head.detections_per_img == 7
    with pytest.warns(DeprecationWarning, match=r"YOLOv3.max_detections is deprecated, use YOLOv3.head.detections_"):
        model.max_detections = 3
    assert model.head.detections_per_img == 3
    with pytest.warns(DeprecationWarning, match="preprocess= is deprecated, use resize_mode="):
        model = build_yolov3("tiny", 2, input_size=(64, 64), preprocess="letterbox")
    assert model.preprocess.resize_mode == "letterbox"


def test_fuse_gives_the_same_detections():
    torch.manual_seed(0)
    model = perturb_batchnorms(build_yolov3("tiny", 3, input_size=(96, 96), score_thresh=0.0)).eval()
    images = [torch.rand(3, 80, 120)]
    with torch.no_grad():
        before = model(images)[0][0]
        model.fuse()
        after = model(images)[0][0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after["scores"], before["scores"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after["boxes"], before["boxes"], rtol=1e-4, atol=1e-3)
    with pytest.raises(RuntimeError, match="fused"):
        model.train()


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="multiples of 32"):
        build_yolov3("tiny", 3, input_size=(100, 100))
    with pytest.raises(ValueError, match="resize_mode"):
        build_yolov3("tiny", 3, resize_mode="crop")
    model = build_yolov3("tiny", 3, input_size=(64, 64))
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 64, 64)])
