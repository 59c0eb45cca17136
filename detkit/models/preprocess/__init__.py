"""Input stages of the detectors (a detector's ``preprocess`` module) and the way back to the inputs.

:class:`Preprocess` is the contract (images and targets in, an :class:`~detkit.structures.ImageList`
and targets in its pixels out; ``postprocess`` maps predictions back); each family keeps its
numerics in its own subclass.
"""

from detkit.models.preprocess.base import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resize_boxes, resize_keypoints
from detkit.models.preprocess.rcnn import RCNNPreprocess
from detkit.models.preprocess.ssd import SSDPreprocess
from detkit.models.preprocess.yolo import LETTERBOX_FILL, RESIZE_MODES, YOLOPreprocess

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LETTERBOX_FILL",
    "RESIZE_MODES",
    "Preprocess",
    "RCNNPreprocess",
    "SSDPreprocess",
    "YOLOPreprocess",
    "resize_boxes",
    "resize_keypoints",
]
