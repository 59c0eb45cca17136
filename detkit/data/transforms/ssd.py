"""SSD pipelines (Liu et al. 2016, sec. 2.2 "Data augmentation"; as torchvision's SSD reference).

Training: photometric distortion (:class:`SSDPhotometricDistort`), zoom out ("expand",
:class:`ZoomOut`), min-IoU random crop (:class:`MinIoURandomCrop`), horizontal flip, resize to a
square; evaluation: the resize only. albumentations has the flip and the resize; the other three
are here.

The photometric step is not ``A.ColorJitter``, which always applies all four jitters in a random
order: SSD applies each one with probability ``p``, contrast either before or after saturation and
hue (a coin flip), and then, with probability ``p``, permutes the colour channels.
:class:`SSDPhotometricDistort` does exactly that, with albumentations' torchvision-style colour
functions (the Caffe model's ``distort_param``; torchvision's reference
``RandomPhotometricDistort``). It changes pixels only, so boxes, masks and labels pass through.

A full SSD pipeline as a bare albumentations ``Compose``, boxes in ``pascal_voc`` format (xyxy
pixels, detkit's own)::

    A.Compose(
        [SSDPhotometricDistort(), ZoomOut(), MinIoURandomCrop(), A.HorizontalFlip(), A.Resize(300, 300)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
    )

:func:`ssd_train_transforms` builds it as a :class:`~detkit.data.transforms.DetectionTransform`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
from albumentations.augmentations.crops import functional as fcrops
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.augmentations.pixel import functional as fpixel

from .common import DetectionTransform

__all__ = [
    "MinIoURandomCrop",
    "SSDPhotometricDistort",
    "SSD_FILL_RGB",
    "ZoomOut",
    "ssd_test_transforms",
    "ssd_train_transforms",
]

# SSD's fill colour for expanded canvases: the ImageNet mean in 0..255 RGB (as the SSD paper's code).
SSD_FILL_RGB = (123, 117, 104)
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


class ZoomOut(A.DualTransform):
    """SSD's "expand": place the image at a random spot of a canvas ``r`` times larger
    (``r`` uniform in ``[1, max_ratio]``) filled with ``fill``, so objects become smaller.

    Args:
        max_ratio: largest canvas/image side ratio.
        fill: canvas colour, RGB 0..255 (default the ImageNet mean, as SSD).
        p: probability.
    """

    def __init__(self, max_ratio: float = 4.0, fill: Sequence[float] = SSD_FILL_RGB, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.max_ratio = max_ratio
        self.fill = tuple(fill)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(1.0, self.max_ratio)
        new_height, new_width = int(height * ratio), int(width * ratio)
        return {
            "top": self.py_random.randint(0, new_height - height),
            "left": self.py_random.randint(0, new_width - width),
            "canvas": (new_height, new_width),
            "source": (height, width),
        }

    def _place(self, array: np.ndarray, top: int, left: int, canvas: tuple[int, int], fill) -> np.ndarray:
        out = np.empty((*canvas, *array.shape[2:]), dtype=array.dtype)
        out[...] = np.asarray(fill, dtype=array.dtype) if array.ndim == 3 else fill
        out[top : top + array.shape[0], left : left + array.shape[1]] = array
        return out

    def apply(self, img: np.ndarray, top: int, left: int, canvas: tuple[int, int], **params: Any) -> np.ndarray:
        fill = self.fill[: img.shape[2]] if img.ndim == 3 else self.fill[0]
        return self._place(img, top, left, canvas, fill)

    def apply_to_mask(
        self, mask: np.ndarray, top: int, left: int, canvas: tuple[int, int], **params: Any
    ) -> np.ndarray:
        return self._place(mask, top, left, canvas, 0)

    def apply_to_bboxes(
        self, bboxes: np.ndarray, top: int, left: int, canvas: tuple[int, int], source: tuple[int, int], **params: Any
    ) -> np.ndarray:
        # albumentations passes boxes normalised by the input size; renormalise by the canvas.
        out = bboxes.copy()
        (height, width), (new_height, new_width) = source, canvas
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * width + left) / new_width
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * height + top) / new_height
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_ratio", "fill")


class MinIoURandomCrop(BaseCrop):
    """SSD's random crop: a patch whose IoU with at least one box reaches a randomly chosen
    threshold; boxes whose centre falls outside the patch are dropped, the rest clipped.

    As torchvision's ``RandomIoUCrop``: a threshold is drawn from ``min_ious`` plus "no crop";
    up to ``max_trials`` patches of side ``[min_scale, 1]`` of the image with aspect ratio in
    ``aspect_ratio_range`` are tried; if none qualifies, the image is left uncropped. Images with
    no box are left uncropped.
    """

    def __init__(
        self,
        min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        min_scale: float = 0.3,
        aspect_ratio_range: tuple[float, float] = (0.5, 2.0),
        max_trials: int = 50,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.min_ious = tuple(min_ious)
        self.min_scale = min_scale
        self.aspect_ratio_range = aspect_ratio_range
        self.max_trials = max_trials

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        whole = (0, 0, width, height)
        bboxes = np.asarray(data.get("bboxes", np.zeros((0, 4))), dtype=np.float64)
        choice = self.py_random.randrange(len(self.min_ious) + 1)
        if len(bboxes) == 0 or choice == len(self.min_ious):
            return {"crop_coords": whole}
        min_iou = self.min_ious[choice]
        boxes = bboxes[:, :4] * np.array([width, height, width, height])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(self.max_trials):
            crop_w = self.py_random.uniform(self.min_scale, 1.0) * width
            crop_h = self.py_random.uniform(self.min_scale, 1.0) * height
            if not self.aspect_ratio_range[0] <= crop_w / crop_h <= self.aspect_ratio_range[1]:
                continue
            left = self.py_random.uniform(0, width - crop_w)
            top = self.py_random.uniform(0, height - crop_h)
            x1, y1, x2, y2 = int(left), int(top), int(left + crop_w), int(top + crop_h)
            if x2 <= x1 or y2 <= y1:
                continue
            inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
            if not inside.any():
                continue
            ix = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1), 0, None)
            iy = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1), 0, None)
            inter = ix * iy
            union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (x2 - x1) * (y2 - y1) - inter
            if (inter / np.maximum(union, 1e-9)).max() >= min_iou:
                return {"crop_coords": (x1, y1, x2, y2)}
        return {"crop_coords": whole}

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        centres_x = (bboxes[:, 0] + bboxes[:, 2]) / 2 * width
        centres_y = (bboxes[:, 1] + bboxes[:, 3]) / 2 * height
        x1, y1, x2, y2 = crop_coords
        inside = (centres_x > x1) & (centres_x < x2) & (centres_y > y1) & (centres_y < y2)
        # Rows (with their label columns, hence box_indices) are dropped together.
        return fcrops.crop_bboxes_by_coords(bboxes[inside], crop_coords, (height, width))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "min_scale", "aspect_ratio_range", "max_trials")


def ssd_train_transforms(
    size: int = 300,
    *,
    fill: Sequence[float] = SSD_FILL_RGB,
    max_zoom_out: float = 4.0,
    flip_prob: float = 0.5,
    drop_crowd: bool = True,
    seed: int | None = None,
) -> DetectionTransform:
    """SSD training (Liu et al. 2016, as torchvision's SSD reference): photometric distortion,
    zoom out (expand) with probability 0.5, min-IoU random crop, flip, resize to ``size x size``."""
    transforms = [
        SSDPhotometricDistort(),
        ZoomOut(max_ratio=max_zoom_out, fill=fill, p=0.5),
        MinIoURandomCrop(),
        A.HorizontalFlip(p=flip_prob),
        A.Resize(size, size),
    ]
    return DetectionTransform(transforms, drop_crowd=drop_crowd, seed=seed)


def ssd_test_transforms(size: int = 300) -> DetectionTransform:
    """SSD evaluation: resize to ``size x size`` (boxes scale with it; ``target["orig_size"]``
    keeps the original size to map predictions back)."""
    return DetectionTransform([A.Resize(size, size)], min_box_size=0.0)  # evaluation keeps every box
