"""Necks: ``{level: feature map}`` -> ``{level: feature map}`` with ``output_shape()``."""

from detkit.models.necks.fpn import FPN, fpn_state_dict_from_torchvision

from detkit.models.necks.yolo_neck import YOLOv3Neck

__all__ = [
    "FPN",
    "YOLOv3Neck",
    "fpn_state_dict_from_torchvision",
]
