"""detkit's operators: compiled C++/CUDA kernels where built, pure-PyTorch fallbacks otherwise."""

from detkit.ops._ext import has_ext
from detkit.ops.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes_to_image,
    generalized_box_iou,
    remove_small_boxes,
)

__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_xyxy_to_xywh",
    "clip_boxes_to_image",
    "generalized_box_iou",
    "has_ext",
    "remove_small_boxes",
]
