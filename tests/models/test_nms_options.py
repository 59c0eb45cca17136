"""Soft-NMS and class-agnostic NMS are settings of every detector's selection step (NMSOptions):
R-CNN's box predictor (RoIHeads), SSD / SSDLite, YOLOv3, YOLOv8 / YOLO11, RetinaNet and FCOS."""

from __future__ import annotations

import pytest
import torch

from detkit.config import instantiate, load_config
from detkit.models.dense_heads import FCOSHead, RetinaNetHead, SSDHead, YOLOv3Head, YOLOv8Head
from detkit.models.postprocess import NMSOptions
from detkit.models.roi_heads import RoIHeads
from detkit.ops import box_iou

IMAGE_SIZE = 128
# config, the part that selects, the small input size override
DETECTORS = {
    "faster_rcnn": ("configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py", "roi_heads"),
    "ssdlite": ("configs/ssd/ssdlite320_mobilenetv3_shapes.py", "head"),
    "yolov3_tiny": ("configs/yolo/yolov3_tiny_320_shapes.py", "head"),
    "retinanet": ("configs/retinanet/retinanet_r18_fpn_shapes.py", "head"),
    "fcos": ("configs/fcos/fcos_r18_fpn_shapes.py", "head"),
    "yolov8n": ("configs/yolov8/yolov8n_320_shapes.py", "head"),
}


def _detect(model, part, **nms):
    part.configure_nms(**nms)
    with torch.no_grad():
        predictions, _ = model([torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))])
    return predictions[0]


def _largest_overlap(prediction, same_class: bool) -> float:
    """The largest IoU of two kept boxes (of one class), among the boxes inside the image: a box
    mapped back to the input is clipped there (YOLO clips after its NMS), which may make two equal."""
    boxes, labels = prediction["boxes"], prediction["labels"]
    inside = (boxes[:, :2] > 0).all(dim=1) & (boxes[:, 2:] < IMAGE_SIZE).all(dim=1)
    inside &= (boxes[:, 2:] > boxes[:, :2]).all(dim=1)
    boxes, labels = boxes[inside], labels[inside]
    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    if same_class:
        iou = iou * (labels[:, None] == labels[None, :])
    return float(iou.max()) if iou.numel() else 0.0


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_detector_selects_with_hard_agnostic_and_soft_nms(name):
    path, part_name = DETECTORS[name]
    overrides = list(load_config(path).get("test_overrides", []))
    cfg = load_config(path, overrides)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    part = getattr(model, part_name)
    assert isinstance(part, NMSOptions) and part.nms_method == "hard" and part.class_agnostic_nms is False
    part.score_thresh = 0.0
    part.detections_per_img = 300
    if name == "fcos":  # random FCOS weights predict distances of 0 (after the ReLU): empty boxes
        torch.nn.init.constant_(part.box_subnet.bbox_reg.bias, 1.0)
    thresh = float(part.nms_thresh)

    hard = _detect(model, part)
    assert hard["boxes"].shape[0] > 1
    assert _largest_overlap(hard, same_class=True) <= thresh + 1e-6

    agnostic = _detect(model, part, class_agnostic_nms=True)
    assert _largest_overlap(agnostic, same_class=False) <= thresh + 1e-6
    assert agnostic["boxes"].shape[0] <= hard["boxes"].shape[0]

    # Soft-NMS decays overlapping boxes instead of dropping them: more boxes, the best one unchanged.
    soft = _detect(model, part, class_agnostic_nms=False, nms_method="soft", soft_nms_min_score=0.0)
    assert soft["boxes"].shape[0] > hard["boxes"].shape[0]
    torch.testing.assert_close(soft["scores"][0], hard["scores"][0])
    torch.testing.assert_close(soft["boxes"][0], hard["boxes"][0])
    assert torch.all(soft["scores"][:-1] >= soft["scores"][1:])
    part.configure_nms(nms_method="hard")


@pytest.mark.parametrize("head_class", [RetinaNetHead, FCOSHead, SSDHead, YOLOv3Head, YOLOv8Head, RoIHeads])
def test_nms_settings_are_constructor_arguments(head_class):
    import inspect

    parameters = inspect.signature(head_class).parameters
    for name in ("nms_method", "class_agnostic_nms", "soft_nms_method", "soft_nms_sigma", "soft_nms_min_score"):
        assert name in parameters, (head_class.__name__, name)


def test_bad_nms_settings_are_one_line_errors():
    head = RetinaNetHead(64, 3)
    with pytest.raises(ValueError, match=r"RetinaNetHead: nms_method must be one of \('hard', 'soft', 'none'\)"):
        head.configure(nms_method="batched")
    with pytest.raises(ValueError, match="soft_nms_method must be one of"):
        FCOSHead(64, 3, soft_nms_method="box")
    with pytest.raises(ValueError, match="soft_nms_sigma must be > 0"):
        head.configure_nms(soft_nms_sigma=0.0)
    head.configure(nms_method="soft", soft_nms_method="gaussian", class_agnostic_nms=True)
    assert head.nms_options() == dict(nms_method="soft", class_agnostic_nms=True, soft_nms_method="gaussian",
                                      soft_nms_sigma=0.5, soft_nms_min_score=0.001)
