"""Necks: ``{level: feature map}`` -> ``{level: feature map}`` with ``output_shape()``."""

from detkit.models.necks.fpn import FPN, fpn_state_dict_from_torchvision

from detkit.models.necks.yolo_neck import YOLOv3Neck
from detkit.models.necks.yolov8_pan import YOLOv8PAN

__all__ = [
    "FPN",
    "YOLOv3Neck",
    "YOLOv8PAN",
    "fpn_state_dict_from_torchvision",
]
