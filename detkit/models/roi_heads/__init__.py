"""Second-stage heads of the two-stage detectors: box, mask and keypoint heads and their RoI logic."""

from detkit.models.roi_heads.box_head import FastRCNNPredictor, TwoMLPHead
from detkit.models.roi_heads.keypoint_head import (
    KeypointHead,
    heatmaps_to_keypoints,
    keypoint_rcnn_loss,
    keypoints_to_heatmap,
)
from detkit.models.roi_heads.mask_head import MaskHead, mask_rcnn_loss, paste_masks_in_image, project_masks_on_boxes
from detkit.models.roi_heads.roi_heads import RoIHeads

__all__ = [
    "FastRCNNPredictor",
    "KeypointHead",
    "MaskHead",
    "RoIHeads",
    "TwoMLPHead",
    "heatmaps_to_keypoints",
    "keypoint_rcnn_loss",
    "keypoints_to_heatmap",
    "mask_rcnn_loss",
    "paste_masks_in_image",
    "project_masks_on_boxes",
]
