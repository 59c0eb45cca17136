"""Dense (per-location) heads: RPN, SSD, SSDLite, YOLOv3."""

from detkit.models.dense_heads.rpn import RPN, RPNHead
from detkit.models.dense_heads.ssd_head import SSDHead, SSDLiteHead
from detkit.models.dense_heads.yolo_head import YOLOv3Head

__all__ = ["RPN", "RPNHead", "SSDHead", "SSDLiteHead", "YOLOv3Head"]
