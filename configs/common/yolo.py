"""YOLOv3 / YOLOv3-tiny model trees for the experiment configs, as functions returning fresh L() trees.

The architecture wiring lives in :mod:`detkit.models.zoo` (shared with the darknet importer); these
factories add the training and evaluation settings of an experiment:

- letterbox preprocessing (keeps the aspect ratio, pads with grey), the usual choice for training
  and COCO/VOC evaluation; use ``model.preprocess = "resize"`` to reproduce darknet/OpenCV's demo;
- multi-scale training: each batch draws its square input size from ``train_sizes``
  (darknet's ``random=1``: 320..608 in steps of 32 around a 416 input);
- a low score threshold (0.005) and 100 detections per image for mAP evaluation, class-aware NMS
  at IoU 0.45.

Children call a function and then set attributes, e.g. ``model.head.ignore_thresh = 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence

from detkit.config import LazyCall
from detkit.models.zoo import yolov3_darknet53_config, yolov3_tiny_config


def multi_scale_sizes(input_size: int, spread: int = 3) -> tuple[int, ...]:
    """Multiples of 32 from ``input_size - 32 * spread`` to ``input_size + 32 * spread`` (at least 32)."""
    return tuple(s for s in range(input_size - 32 * spread, input_size + 32 * spread + 1, 32) if s >= 32)


def _detector_settings(input_size: int, class_names: Sequence[str] | None, multi_scale: bool) -> dict:
    return dict(
        input_size=(input_size, input_size),
        preprocess="letterbox",
        train_sizes=multi_scale_sizes(input_size) if multi_scale else None,
        score_thresh=0.005,
        nms_thresh=0.45,
        max_detections=100,
        class_names=None if class_names is None else list(class_names),
    )


def yolov3_d53(
    num_classes: int, *, input_size: int = 416, class_names: Sequence[str] | None = None, multi_scale: bool = True
) -> LazyCall:
    """YOLOv3 with Darknet-53, COCO anchors, batch norms trained."""
    return yolov3_darknet53_config(num_classes, **_detector_settings(input_size, class_names, multi_scale))


def yolov3_tiny(
    num_classes: int, *, input_size: int = 416, class_names: Sequence[str] | None = None, multi_scale: bool = True
) -> LazyCall:
    """YOLOv3-tiny, its COCO anchors, batch norms trained."""
    return yolov3_tiny_config(num_classes, **_detector_settings(input_size, class_names, multi_scale))


# Shrinks any YOLO experiment for tests/test_configs.py: small inputs, same structure.
TEST_OVERRIDES = ["model.input_size=(64, 64)", "model.train_sizes=(64, 96)"]
