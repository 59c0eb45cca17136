"""Augmentation pipelines on albumentations, keeping boxes, labels and masks in step.

A pipeline is a :class:`DetectionTransform`: a callable
``(image [H, W, 3] uint8 RGB ndarray, target dict) -> (image [3, H', W'] float32 RGB in [0, 1], target)``
that datasets take as ``transforms=``. Inside, an ``albumentations.Compose`` moves the boxes in
``"pascal_voc"`` format, which is xyxy absolute pixels, detkit's own convention (no conversion).

Alignment: albumentations may drop boxes (cropped away, too small). Every box travels with its
index as a label field (``box_indices``); after the pipeline, every per-box field of the target
(``labels``, ``iscrowd``, ``difficult``, ``masks`` and any other ``[N, ...]`` tensor) is indexed
by the surviving indices, so nothing falls out of step.

Crowd boxes: the training pipelines drop ``iscrowd == 1`` boxes before augmenting
(``drop_crowd=True``), the test pipelines keep them for evaluation (conventions.md).

Pipelines (the model normalises pixels itself; none of these normalise):

* R-CNN: :func:`rcnn_train_transforms` (flip, optional photometric and multi-scale
  shortest-edge resize; R-CNN models resize themselves, so the default does not resize),
  :func:`rcnn_test_transforms` (conversion only).
* SSD: :func:`ssd_train_transforms` (photometric distortion, :class:`ZoomOut` expand,
  :class:`MinIoURandomCrop`, flip, resize to a square), :func:`ssd_test_transforms`.
* YOLO: :func:`yolo_train_transforms` (letterbox, :class:`RandomHSV`, flip),
  :func:`yolo_test_transforms`; mosaic and mixup need several images and are dataset wrappers,
  :class:`detkit.data.mosaic.MosaicDataset` and :class:`detkit.data.mosaic.MixupDataset`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.crops import functional as fcrops
from albumentations.augmentations.crops.transforms import BaseCrop
from torch import Tensor

from .image_io import image_to_tensor
from .ssd_transforms import SSDPhotometricDistort

__all__ = [
    "DetectionTransform",
    "ZoomOut",
    "MinIoURandomCrop",
    "RandomHSV",
    "ResizeShortestEdge",
    "select_boxes",
    "rcnn_train_transforms",
    "rcnn_test_transforms",
    "ssd_train_transforms",
    "ssd_test_transforms",
    "yolo_train_transforms",
    "yolo_test_transforms",
]

# SSD's fill colour for expanded canvases: the ImageNet mean in 0..255 RGB (as the SSD paper's code).
SSD_FILL_RGB = (123, 117, 104)
# YOLO letterbox padding grey (darknet / ultralytics).
YOLO_PAD_VALUE = 114


def select_boxes(target: dict[str, Any], keep: Tensor | np.ndarray) -> dict[str, Any]:
    """A copy of ``target`` with every per-box field (any tensor whose first dimension is the
    number of boxes: ``boxes``, ``labels``, ``iscrowd``, ``difficult``, ``masks`` ...) indexed by
    ``keep`` (a bool mask ``[N]`` or an index array)."""
    num_boxes = len(target["boxes"])
    keep = torch.as_tensor(np.asarray(keep))
    selected = dict(target)
    for key, value in target.items():
        if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == num_boxes:
            selected[key] = value[keep]
    return selected


class DetectionTransform:
    """Run an albumentations pipeline on a detection sample and convert the image to a tensor.

    The returned target is the input's with boxes and per-box fields transformed, plus
    ``image_size`` ``(H', W')``: the size of the returned image (``orig_size`` stays the size of
    the file, so predictions can be mapped back when a pipeline resized).

    Args:
        transforms: albumentations transforms, applied in order (may be empty).
        drop_crowd: drop boxes with ``iscrowd == 1`` first (training).
        min_box_size: boxes narrower or shorter than this (pixels, after the pipeline) are dropped.
        recompute_boxes_from_masks: when the target has masks, replace each box by its mask's
            bounding box after the pipeline (exact after crops, which only clip boxes; as
            detectron2's ``recompute_boxes``); objects whose mask became empty are dropped.
        seed: a fixed seed for the pipeline's random stream (tests, demos). ``None`` (training):
            each call draws its seed from Python's global ``random``, which the DataLoader seeds
            per worker and detkit's engine per sample, so augmentation follows the global seeding
            (albumentations' own generators would otherwise ignore it).
    """

    def __init__(
        self,
        transforms: Sequence[A.BasicTransform] = (),
        *,
        drop_crowd: bool = False,
        min_box_size: float = 1.0,
        recompute_boxes_from_masks: bool = False,
        seed: int | None = None,
    ) -> None:
        self.drop_crowd = drop_crowd
        self.recompute_boxes_from_masks = recompute_boxes_from_masks
        # An empty Compose with bbox_params warns; no transforms means conversion only.
        self.compose: A.Compose | None = None
        if transforms:
            bbox_params = A.BboxParams(
                format="pascal_voc", label_fields=["box_indices"], min_width=min_box_size, min_height=min_box_size,
                clip=True,
            )  # fmt: skip
            self.compose = A.Compose(list(transforms), bbox_params=bbox_params)
        self.seed = seed
        if seed is not None:
            self._seed_pipeline(seed)

    def _seed_pipeline(self, seed: int) -> None:
        # One generator pair shared by every transform (Compose(seed=...) gives each transform
        # its own generator with the same seed, so their draws would be correlated).
        if self.compose is not None:
            self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Args: ``image`` ``[H, W, 3]`` uint8 RGB; ``target`` with ``boxes [N, 4]`` xyxy pixels.
        Returns: ``(image [3, H', W'] float32 in [0, 1], target)`` with every per-box field aligned."""
        if self.seed is None:
            self._seed_pipeline(random.getrandbits(63))
        if self.drop_crowd and "iscrowd" in target:
            target = select_boxes(target, target["iscrowd"] == 0)
        num_boxes = len(target["boxes"])
        data: dict[str, Any] = {
            "image": image,
            "bboxes": target["boxes"].numpy().reshape(-1, 4).astype(np.float32),
            "box_indices": np.arange(num_boxes),
        }
        has_masks = "masks" in target
        if has_masks and num_boxes:
            data["masks"] = target["masks"].numpy()
        out = self.compose(**data) if self.compose is not None else dict(data, masks=list(data.get("masks", [])))

        kept = np.asarray(out["box_indices"], dtype=np.int64).reshape(-1)
        new_image = out["image"]
        height, width = new_image.shape[:2]
        result = select_boxes({k: v for k, v in target.items() if k != "masks"}, kept)
        result["boxes"] = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)[:, :4])
        if has_masks:
            if num_boxes:
                masks = np.asarray(out["masks"], dtype=np.uint8)[kept]
            else:
                masks = np.zeros((0, height, width), dtype=np.uint8)
            result["masks"] = torch.from_numpy(np.ascontiguousarray(masks))
            if self.recompute_boxes_from_masks:
                result = _boxes_from_masks(result)
        result["image_size"] = (int(height), int(width))
        return image_to_tensor(new_image), result


def _boxes_from_masks(target: dict[str, Any]) -> dict[str, Any]:
    """Replace ``boxes`` by the masks' bounding boxes (continuous: ``x2 = last column + 1``);
    drop objects with an empty mask."""
    masks = target["masks"].bool()
    nonempty = masks.flatten(1).any(dim=1) if len(masks) else torch.zeros(0, dtype=torch.bool)
    target = select_boxes(target, nonempty)
    masks = target["masks"].bool()
    if len(masks) == 0:
        return target
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    height, width = masks.shape[1:]
    y = torch.arange(height).expand_as(rows)
    x = torch.arange(width).expand_as(cols)
    boxes = torch.stack(
        [
            torch.where(cols, x, width).min(dim=1).values,
            torch.where(rows, y, height).min(dim=1).values,
            torch.where(cols, x, -1).max(dim=1).values + 1,
            torch.where(rows, y, -1).max(dim=1).values + 1,
        ],
        dim=1,
    )
    target["boxes"] = boxes.float()
    return target


# --------------------------------------------------------------------------------------------
# custom albumentations transforms (what albumentations lacks)


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


class ResizeShortestEdge(A.DualTransform):
    """Resize so the shorter side is a random choice of ``short_edge_lengths`` while the longer
    side stays at most ``max_size`` (detectron2's ``ResizeShortestEdge``, multi-scale training).

    Boxes scale with the image (albumentations keeps them normalised, so they are unchanged
    here); masks use nearest-neighbour interpolation.
    """

    def __init__(self, short_edge_lengths: Sequence[int], max_size: int = 1333, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.short_edge_lengths = tuple(short_edge_lengths)
        self.max_size = max_size

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        short = self.py_random.choice(self.short_edge_lengths)
        scale = min(short / min(height, width), self.max_size / max(height, width))
        return {"new_size": (max(1, int(round(height * scale))), max(1, int(round(width * scale))))}

    def apply(self, img: np.ndarray, new_size: tuple[int, int], **params: Any) -> np.ndarray:
        return cv2.resize(img, (new_size[1], new_size[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, new_size: tuple[int, int], **params: Any) -> np.ndarray:
        return cv2.resize(mask, (new_size[1], new_size[0]), interpolation=cv2.INTER_NEAREST)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("short_edge_lengths", "max_size")


# --------------------------------------------------------------------------------------------
# pipelines


def _letterbox(size: int, pad_value: int) -> list[A.BasicTransform]:
    """Scale the longer side to ``size`` (up or down), then pad to ``size x size`` centred."""
    return [
        A.LongestMaxSize(max_size=size),
        A.PadIfNeeded(
            min_height=size, min_width=size, position="center", border_mode=cv2.BORDER_CONSTANT,
            fill=pad_value, fill_mask=0,
        ),
    ]  # fmt: skip


def rcnn_train_transforms(
    *,
    flip_prob: float = 0.5,
    photometric: bool = False,
    short_edge_lengths: Sequence[int] | None = None,
    max_size: int = 1333,
    drop_crowd: bool = True,
    seed: int | None = None,
) -> DetectionTransform:
    """Faster/Mask R-CNN training: horizontal flip, optional colour jitter, optional multi-scale
    shortest-edge resize (``short_edge_lengths``, e.g. ``(640, 672, ..., 800)``; without it the
    model's own resize sets the scale). Crowd boxes dropped."""
    transforms: list[A.BasicTransform] = []
    if short_edge_lengths:
        transforms.append(ResizeShortestEdge(short_edge_lengths, max_size))
    if photometric:
        transforms.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8))
    transforms.append(A.HorizontalFlip(p=flip_prob))
    return DetectionTransform(transforms, drop_crowd=drop_crowd, seed=seed)


def rcnn_test_transforms() -> DetectionTransform:
    """R-CNN evaluation and inference: conversion to a tensor only (the model resizes; crowd
    boxes kept for evaluation)."""
    return DetectionTransform([])


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
