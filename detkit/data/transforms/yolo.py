"""YOLO pipelines: letterbox, HSV gains (:class:`RandomHSV`), flip.

Mosaic and mixup need several images and are dataset wrappers,
:class:`detkit.data.mosaic.MosaicDataset` and :class:`detkit.data.mosaic.MixupDataset`.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from .common import DetectionTransform

__all__ = ["RandomHSV", "YOLO_PAD_VALUE", "yolo_test_transforms", "yolo_train_transforms"]

# YOLO letterbox padding grey (darknet / ultralytics).
YOLO_PAD_VALUE = 114


class RandomHSV(A.ImageOnlyTransform):
    """YOLO's HSV augmentation: multiply hue, saturation and value by random gains
    ``1 + uniform(-g, g)`` (YOLOv5's ``augment_hsv``; hue wraps around OpenCV's 0..179).

    Args:
        hue_gain: ``g`` for hue (fraction).
        saturation_gain: ``g`` for saturation.
        value_gain: ``g`` for value.
        p: probability.
    """

    def __init__(
        self, hue_gain: float = 0.015, saturation_gain: float = 0.7, value_gain: float = 0.4, p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.gains = (hue_gain, saturation_gain, value_gain)

    def get_params(self) -> dict[str, Any]:
        return {"factors": [1.0 + self.py_random.uniform(-gain, gain) for gain in self.gains]}

    def apply(self, img: np.ndarray, factors: list[float], **params: Any) -> np.ndarray:
        hue, saturation, value = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
        levels = np.arange(256, dtype=np.float32)
        lut_hue = ((levels * factors[0]) % 180).astype(np.uint8)
        lut_saturation = np.clip(levels * factors[1], 0, 255).astype(np.uint8)
        lut_value = np.clip(levels * factors[2], 0, 255).astype(np.uint8)
        hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(saturation, lut_saturation), cv2.LUT(value, lut_value)))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gains",)


def _letterbox(size: int, pad_value: int) -> list[A.BasicTransform]:
    """Scale the longer side to ``size`` (up or down), then pad to ``size x size`` centred."""
    return [
        A.LongestMaxSize(max_size=size),
        A.PadIfNeeded(
            min_height=size, min_width=size, position="center", border_mode=cv2.BORDER_CONSTANT,
            fill=pad_value, fill_mask=0,
        ),
    ]  # fmt: skip


def yolo_train_transforms(
    size: int = 416,
    *,
    hsv_gains: tuple[float, float, float] = (0.015, 0.7, 0.4),
    flip_prob: float = 0.5,
    pad_value: int = YOLO_PAD_VALUE,
    drop_crowd: bool = True,
    seed: int | None = None,
) -> DetectionTransform:
    """YOLO training: letterbox to ``size x size`` (grey ``pad_value`` borders), HSV gains, flip.
    For mosaic and mixup wrap the dataset (:mod:`detkit.data.mosaic`) and give it this pipeline."""
    transforms = [*_letterbox(size, pad_value), RandomHSV(*hsv_gains), A.HorizontalFlip(p=flip_prob)]
    return DetectionTransform(transforms, drop_crowd=drop_crowd, seed=seed)


def yolo_test_transforms(size: int = 416, *, pad_value: int = YOLO_PAD_VALUE) -> DetectionTransform:
    """YOLO evaluation: letterbox to ``size x size``."""
    return DetectionTransform(_letterbox(size, pad_value), min_box_size=0.0)  # evaluation keeps every box
