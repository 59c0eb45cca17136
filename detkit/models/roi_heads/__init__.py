"""Second-stage heads of the two-stage detectors: box head, mask head and their RoI logic."""

from detkit.models.roi_heads.box_head import FastRCNNPredictor, TwoMLPHead
from detkit.models.roi_heads.mask_head import MaskHead, mask_rcnn_loss, paste_masks_in_image, project_masks_on_boxes
from detkit.models.roi_heads.roi_heads import RoIHeads

__all__ = [
    "FastRCNNPredictor",
    "MaskHead",
    "RoIHeads",
    "TwoMLPHead",
    "mask_rcnn_loss",
    "paste_masks_in_image",
    "project_masks_on_boxes",
]
