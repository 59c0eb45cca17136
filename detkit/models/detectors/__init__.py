"""Detectors: ``detector(images, targets=None) -> (predictions, losses)`` (docs/conventions.md)."""

from detkit.models.detectors.mtcnn import MTCNN, ONet, PNet, RNet
from detkit.models.detectors.ssd import SSD
from detkit.models.detectors.two_stage import FasterRCNN, MaskRCNN
from detkit.models.detectors.yolo import YOLOv3

__all__ = ["MTCNN", "SSD", "FasterRCNN", "MaskRCNN", "ONet", "PNet", "RNet", "YOLOv3"]
