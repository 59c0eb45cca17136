"""Augmentation pipelines on albumentations, by model family (the model normalises pixels itself).

* :mod:`~detkit.data.transforms.common`: :class:`DetectionTransform`, the callable
  ``(image [H, W, 3] uint8 RGB, target) -> (image [3, H', W'] float32 RGB in [0, 1], target)``
  datasets take as ``transforms=``, which keeps boxes, labels and masks in step;
  :func:`select_boxes`.
* :mod:`~detkit.data.transforms.rcnn`: :func:`rcnn_train_transforms` (flip, optional photometric
  and multi-scale shortest-edge resize, :class:`ResizeShortestEdge`), :func:`rcnn_test_transforms`.
* :mod:`~detkit.data.transforms.ssd`: :func:`ssd_train_transforms` (:class:`SSDPhotometricDistort`,
  :class:`ZoomOut` expand, :class:`MinIoURandomCrop`, flip, resize to a square),
  :func:`ssd_test_transforms`.
* :mod:`~detkit.data.transforms.yolo`: :func:`yolo_train_transforms` (letterbox,
  :class:`RandomHSV`, flip), :func:`yolo_test_transforms`; mosaic and mixup are dataset wrappers
  (:mod:`detkit.data.mosaic`).
"""

from .common import DetectionTransform, select_boxes
from .rcnn import ResizeShortestEdge, rcnn_test_transforms, rcnn_train_transforms
from .ssd import SSD_FILL_RGB, MinIoURandomCrop, SSDPhotometricDistort, ZoomOut, ssd_test_transforms, ssd_train_transforms
from .yolo import YOLO_PAD_VALUE, RandomHSV, yolo_test_transforms, yolo_train_transforms

__all__ = [
    "DetectionTransform",
    "MinIoURandomCrop",
    "RandomHSV",
    "ResizeShortestEdge",
    "SSDPhotometricDistort",
    "SSD_FILL_RGB",
    "YOLO_PAD_VALUE",
    "ZoomOut",
    "rcnn_test_transforms",
    "rcnn_train_transforms",
    "select_boxes",
    "ssd_test_transforms",
    "ssd_train_transforms",
    "yolo_test_transforms",
    "yolo_train_transforms",
]
