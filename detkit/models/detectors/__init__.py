"""Detectors: ``detector(images, targets=None) -> (predictions, losses)`` (docs/conventions.md).

:class:`Detector` (``base.py``) is the contract every family subclasses; a family wires its parts
in ``forward_batch``.
"""

from detkit.models.detectors.base import Detector
from detkit.models.detectors.mtcnn import MTCNN, ONet, PNet, RNet
from detkit.models.detectors.one_stage_fpn import FCOS, OneStageFPNDetector, RetinaNet
from detkit.models.detectors.ssd import SSD
from detkit.models.detectors.two_stage import FasterRCNN, KeypointRCNN, MaskRCNN
from detkit.models.detectors.yolo import YOLOv3
from detkit.models.detectors.yolov8 import YOLOv8

__all__ = [
    "FCOS", "MTCNN", "SSD", "Detector", "FasterRCNN", "KeypointRCNN", "MaskRCNN", "ONet", "OneStageFPNDetector", "PNet",
    "RNet", "RetinaNet", "YOLOv3", "YOLOv8",
]  # fmt: skip
