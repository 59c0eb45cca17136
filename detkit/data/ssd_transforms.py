"""SSD's photometric distortion as an albumentations transform (what albumentations lacks for SSD).

SSD's training augmentation (Liu et al. 2016, sec. 2.2 "Data augmentation"; the Caffe model's
``distort_param`` and torchvision's reference ``RandomPhotometricDistort``) is: photometric
distortion, zoom out ("expand"), min-IoU random crop, horizontal flip, resize. albumentations has
the flip and the resize; :mod:`detkit.data.transforms` provides ``ZoomOut`` and
``MinIoURandomCrop``. The photometric step is not ``A.ColorJitter``, which always applies all four
jitters in a random order: SSD applies each one with probability ``p``, contrast either before or
after saturation and hue (a coin flip), and then, with probability ``p``, permutes the colour
channels. :class:`SSDPhotometricDistort` does exactly that, with albumentations' torchvision-style
colour functions. It changes pixels only, so boxes, masks and labels pass through unchanged.

A full SSD pipeline, boxes in ``pascal_voc`` format (xyxy pixels, detkit's own)::

    A.Compose(
        [SSDPhotometricDistort(), ZoomOut(), MinIoURandomCrop(), A.HorizontalFlip(), A.Resize(300, 300)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
    )
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
from albumentations.augmentations.pixel import functional as fpixel

__all__ = ["SSDPhotometricDistort"]

# torchvision's reference RandomPhotometricDistort (SSD recipe): factor ranges. Brightness
# 0.875..1.125 is the Caffe model's brightness_delta 32 / 255 as a factor; hue +-0.05 of a turn is
# its hue_delta 18 degrees.
SSD_BRIGHTNESS = (0.875, 1.125)
SSD_CONTRAST = (0.5, 1.5)
SSD_SATURATION = (0.5, 1.5)
SSD_HUE = (-0.05, 0.05)


class SSDPhotometricDistort(A.ImageOnlyTransform):
    """SSD's photometric distortion of an RGB image (see the module docstring).

    Each of brightness, contrast, saturation, hue and the channel permutation is applied with
    probability ``distort_prob``; contrast comes before saturation and hue half of the time, after
    them otherwise. Factors are drawn uniformly from their ranges (hue as a fraction of a turn).

    Args:
        brightness: range of the brightness factor (1 = unchanged).
        contrast: range of the contrast factor.
        saturation: range of the saturation factor.
        hue: range of the hue shift, in ``[-0.5, 0.5]`` turns.
        distort_prob: probability of each of the five distortions.
        p: probability of the transform as a whole (albumentations' own ``p``).

    Targets: image (``uint8`` or ``float32`` ``[H, W, 3]`` RGB).
    """

    def __init__(
        self,
        brightness: tuple[float, float] = SSD_BRIGHTNESS,
        contrast: tuple[float, float] = SSD_CONTRAST,
        saturation: tuple[float, float] = SSD_SATURATION,
        hue: tuple[float, float] = SSD_HUE,
        distort_prob: float = 0.5,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        for name, (low, high) in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, got {(low, high)}")
        if not -0.5 <= hue[0] <= hue[1] <= 0.5:
            raise ValueError(f"hue must be a range within [-0.5, 0.5], got {hue}")
        if not 0 <= distort_prob <= 1:
            raise ValueError(f"distort_prob must be in [0, 1], got {distort_prob}")
        self.brightness = tuple(brightness)
        self.contrast = tuple(contrast)
        self.saturation = tuple(saturation)
        self.hue = tuple(hue)
        self.distort_prob = distort_prob

    def get_params(self) -> dict[str, Any]:
        """Draws which distortions apply, their factors, the contrast position and the permutation."""
        rng, chance = self.py_random, self.distort_prob

        def maybe(low_high: tuple[float, float]) -> float | None:
            return rng.uniform(*low_high) if rng.random() < chance else None

        contrast_first = rng.random() < 0.5
        permutation = [0, 1, 2]
        permute = rng.random() < chance
        if permute:
            rng.shuffle(permutation)
        return {
            "brightness": maybe(self.brightness),
            "contrast": maybe(self.contrast),
            "saturation": maybe(self.saturation),
            "hue": maybe(self.hue),
            "contrast_first": contrast_first,
            "permutation": permutation if permute else None,
        }

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None = None,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: float | None = None,
        contrast_first: bool = True,
        permutation: list[int] | None = None,
        **params: Any,
    ) -> np.ndarray:
        """Distorts ``img`` ``[H, W, 3]`` (uint8 or float32 in [0, 1]); same shape and dtype."""
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"SSDPhotometricDistort needs an RGB image [H, W, 3], got shape {img.shape}")
        if brightness is not None:
            img = fpixel.adjust_brightness_torchvision(img, brightness)
        if contrast is not None and contrast_first:
            img = fpixel.adjust_contrast_torchvision(img, contrast)
        if saturation is not None:
            img = fpixel.adjust_saturation_torchvision(img, saturation)
        if hue is not None:
            img = fpixel.adjust_hue_torchvision(img, hue)
        if contrast is not None and not contrast_first:
            img = fpixel.adjust_contrast_torchvision(img, contrast)
        if permutation is not None:
            img = np.ascontiguousarray(img[..., permutation])
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast", "saturation", "hue", "distort_prob")
