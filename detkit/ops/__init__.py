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
    complete_box_iou,
    generalized_box_iou,
    paired_complete_box_iou,
    remove_small_boxes,
)
from detkit.ops.nms import batched_nms, nms, soft_nms
from detkit.ops.poolers import MultiScaleRoIAlign
from detkit.ops.roi_align import RoIAlign, roi_align

__all__ = [
    "MultiScaleRoIAlign",
    "RoIAlign",
    "batched_nms",
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_xyxy_to_xywh",
    "clip_boxes_to_image",
    "complete_box_iou",
    "generalized_box_iou",
    "has_ext",
    "nms",
    "paired_complete_box_iou",
    "remove_small_boxes",
    "roi_align",
    "soft_nms",
]
