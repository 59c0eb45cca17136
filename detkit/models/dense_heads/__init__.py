"""Dense (per-location) heads on the :class:`DenseHead` contract (``forward / loss / predict``):
RPN, SSD, SSDLite, YOLOv3."""

from detkit.models.dense_heads.base import DenseHead
from detkit.models.dense_heads.rpn import RPN, RPNHead
from detkit.models.dense_heads.ssd_head import SSDHead, SSDLiteHead
from detkit.models.dense_heads.yolo_head import YOLOv3Head

__all__ = ["RPN", "DenseHead", "RPNHead", "SSDHead", "SSDLiteHead", "YOLOv3Head"]
