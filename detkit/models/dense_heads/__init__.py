"""Dense (per-location) heads on the :class:`DenseHead` contract (``forward / loss / predict``):
RPN, SSD, SSDLite, YOLOv3, YOLOv8 / YOLO11, RetinaNet, FCOS."""

from detkit.models.dense_heads.base import DenseHead
from detkit.models.dense_heads.fcos_head import FCOSHead
from detkit.models.dense_heads.fpn_dense_head import DenseSubnet, FPNDenseHead
from detkit.models.dense_heads.retinanet_head import RetinaNetHead
from detkit.models.dense_heads.rpn import RPN, RPNHead
from detkit.models.dense_heads.ssd_head import SSDHead, SSDLiteHead
from detkit.models.dense_heads.yolo_head import YOLOv3Head
from detkit.models.dense_heads.yolov8_head import YOLOv8Head

__all__ = [
    "RPN", "DenseHead", "DenseSubnet", "FCOSHead", "FPNDenseHead", "RPNHead", "RetinaNetHead", "SSDHead", "SSDLiteHead",
    "YOLOv3Head", "YOLOv8Head",
]  # fmt: skip
