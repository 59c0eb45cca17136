"""Multi-image augmentations for YOLO training: mosaic and mixup, as dataset wrappers.

They need several images per sample, which a per-sample transform cannot see, so they wrap a
dataset. A wrapped dataset must have ``load_raw(index) -> (image [H, W, 3] uint8 RGB, target)``
(every :class:`~detkit.data.base.DetectionDataset` has it, and so do these wrappers, so they
stack). The wrapper's own ``transforms`` run last, on the combined sample; give the inner dataset
none. Typical YOLO training::

    train = MixupDataset(
        MosaicDataset(CocoDetection(image_dir, ann_file), output_size=416),
        transforms=yolo_train_transforms(416), prob=0.15,
    )

Randomness comes from Python's ``random`` module, which the DataLoader seeds per worker.
Crowd boxes are dropped by the final pipeline (``drop_crowd=True``) like any other field.

Faults: a box that is NaN or infinite after a tile is scaled and placed raises a
:class:`~detkit.data.validation.DatasetError` naming the wrapper, the tile's image file and the
box; boxes a mosaic cuts to nothing at the canvas border are dropped (as documented) and counted
in the wrapper's ``drop_report``.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from detkit.utils.image_io import image_to_tensor

from .base import Transforms
from .transforms.common import select_boxes
from .transforms.yolo import YOLO_PAD_VALUE
from .validation import DatasetError, DatasetReport, require_finite_boxes, sanitize_boxes

__all__ = ["MosaicDataset", "MixupDataset"]


class RawDataset(Protocol):
    def __len__(self) -> int: ...
    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]: ...


def _source(target: dict[str, Any]) -> str:
    return str(target.get("file_name", "<image>"))


def _place(
    image: np.ndarray, target: dict[str, Any], scale: float, offset: tuple[int, int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resize ``image`` by ``scale`` and shift its boxes/masks by ``offset`` ``(dx, dy)`` pixels
    (the caller pastes the image there); masks are resized with nearest neighbour."""
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise DatasetError(f"{_source(target)}: image is empty ({width}x{height} WxH); cannot place it")
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale != 1.0:
        image = cv2.resize(image, new_size, interpolation=cv2.INTER_LINEAR)
    target = dict(target)
    boxes = target["boxes"].clone() * scale
    boxes[:, 0::2] += offset[0]
    boxes[:, 1::2] += offset[1]
    target["boxes"] = boxes
    if "masks" in target and scale != 1.0:
        masks = target["masks"].numpy()
        resized = [cv2.resize(mask, new_size, interpolation=cv2.INTER_NEAREST) for mask in masks]
        target["masks"] = (
            torch.from_numpy(np.stack(resized))
            if resized
            else torch.zeros(0, new_size[1], new_size[0], dtype=torch.uint8)
        )
    return image, target


def _paste_masks(
    masks: Tensor, canvas_size: tuple[int, int], dst: tuple[int, int, int, int], src: tuple[int, int, int, int]
) -> Tensor:
    """Masks ``[N, h, w]`` copied region ``src`` -> region ``dst`` (x1, y1, x2, y2) of zero canvases."""
    out = torch.zeros((len(masks), *canvas_size), dtype=torch.uint8)
    out[:, dst[1] : dst[3], dst[0] : dst[2]] = masks[:, src[1] : src[3], src[0] : src[2]]
    return out


def _concat_targets(parts: list[dict[str, Any]], first: dict[str, Any]) -> dict[str, Any]:
    """Concatenate the per-box fields of ``parts``; other keys come from ``first``."""
    merged = dict(first)
    for key, value in first.items():
        if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == len(first["boxes"]):
            if all(key in part for part in parts):
                merged[key] = torch.cat([part[key] for part in parts])
            else:
                merged.pop(key)
    return merged


class _RawWrapper(Dataset):
    def __init__(self, dataset: RawDataset, transforms: Transforms | None) -> None:
        self.dataset = dataset
        self.transforms = transforms
        for name in ("class_names", "label_to_category_id"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.dataset)

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, target = self.load_raw(index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image_to_tensor(image), target


class MosaicDataset(_RawWrapper):
    """Four images tiled around a random centre on a ``2s x 2s`` canvas (YOLOv4/v5 mosaic).

    Item ``i`` uses image ``i`` and three random others, each resized so its longer side is
    ``s`` = ``output_size``; image ``i`` goes top-left of the centre, the others top-right,
    bottom-left, bottom-right. Boxes are shifted, clipped to the canvas, and dropped when
    degenerate (``min_box_size`` pixels); masks follow. The final pipeline letterboxes the
    ``2s x 2s`` canvas to the model size.

    Args:
        dataset: has ``load_raw``.
        output_size: ``s``, the side each tile is scaled to (usually the model input size).
        transforms: run on the mosaic (e.g. :func:`detkit.data.transforms.yolo_train_transforms`).
        prob: probability of a mosaic; otherwise item ``i`` alone.
        pad_value: canvas grey.
        min_box_size: boxes narrower or shorter than this after clipping are dropped (pixels).

    Attributes:
        drop_report: counts of the boxes clipped to the canvas and dropped as degenerate.

    Raises:
        DatasetError: (from :meth:`load_raw`) a tile's box is NaN or infinite once placed
            (the tile's image file and the box named).
    """

    def __init__(
        self,
        dataset: RawDataset,
        output_size: int = 416,
        *,
        transforms: Transforms | None = None,
        prob: float = 1.0,
        pad_value: int = YOLO_PAD_VALUE,
        min_box_size: float = 2.0,
    ) -> None:
        super().__init__(dataset, transforms)
        self.output_size = output_size
        self.prob = prob
        self.pad_value = pad_value
        self.min_box_size = min_box_size
        self.drop_report = DatasetReport(type(self).__name__)

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Item ``index`` as a mosaic: ``([2s, 2s, 3] uint8, target)`` (or image ``index`` alone)."""
        if random.random() >= self.prob:
            return self.dataset.load_raw(index)
        s = self.output_size
        indices = [index] + [random.randrange(len(self.dataset)) for _ in range(3)]
        centre_x, centre_y = (int(random.uniform(0.5 * s, 1.5 * s)) for _ in range(2))
        canvas = np.full((2 * s, 2 * s, 3), self.pad_value, dtype=np.uint8)
        parts, first = [], None
        for position, item in enumerate(indices):
            image, target = self.dataset.load_raw(item)
            if first is None:
                first = target
            image, target = _place(image, target, s / max(image.shape[:2]), (0, 0))  # longer side -> s
            h, w = image.shape[:2]
            # The tile's corner touches the centre; (x1a, y1a, x2a, y2a) on the canvas,
            # (x1b, y1b, x2b, y2b) the part of the tile that fits.
            if position == 0:  # top-left
                x1a, y1a, x2a, y2a = max(centre_x - w, 0), max(centre_y - h, 0), centre_x, centre_y
                x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
            elif position == 1:  # top-right
                x1a, y1a, x2a, y2a = centre_x, max(centre_y - h, 0), min(centre_x + w, 2 * s), centre_y
                x1b, y1b = 0, h - (y2a - y1a)
            elif position == 2:  # bottom-left
                x1a, y1a, x2a, y2a = max(centre_x - w, 0), centre_y, centre_x, min(2 * s, centre_y + h)
                x1b, y1b = w - (x2a - x1a), 0
            else:  # bottom-right
                x1a, y1a, x2a, y2a = centre_x, centre_y, min(centre_x + w, 2 * s), min(2 * s, centre_y + h)
                x1b, y1b = 0, 0
            x2b, y2b = x1b + (x2a - x1a), y1b + (y2a - y1a)
            canvas[y1a:y2a, x1a:x2a] = image[y1b:y2b, x1b:x2b]
            placed = dict(target)
            placed["boxes"] = target["boxes"].clone()
            placed["boxes"][:, 0::2] += x1a - x1b
            placed["boxes"][:, 1::2] += y1a - y1b
            require_finite_boxes(placed["boxes"], _source(target), f"after {type(self).__name__} (tile {position})")
            if "masks" in target:
                placed["masks"] = _paste_masks(
                    target["masks"], (2 * s, 2 * s), (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b)
                )
            parts.append(placed)
        merged = _concat_targets(parts, first)
        # Clip to the canvas and drop what became degenerate (tiles are cut at the canvas border).
        boxes, keep = sanitize_boxes(
            merged["boxes"].numpy(), (2 * s, 2 * s), f"{type(self).__name__} of {_source(first)}", self.drop_report,
            self.min_box_size,
        )
        merged["boxes"] = torch.from_numpy(boxes)
        merged = select_boxes(merged, keep)
        merged["orig_size"] = (2 * s, 2 * s)
        return canvas, merged


class MixupDataset(_RawWrapper):
    """Blend item ``i`` with a random other item (mixup, Zhang et al. 2018, as YOLOv5 uses it):
    ``image = lam * a + (1 - lam) * b`` with ``lam ~ Beta(alpha, alpha)``, and the union of the
    two targets. The other image is scaled to fit inside the first and placed top-left (its
    boxes and masks follow); where it does not cover, ``a`` is blended with ``pad_value``.

    Args:
        dataset: has ``load_raw`` (e.g. a :class:`MosaicDataset`).
        transforms: run on the blended sample.
        prob: probability of mixing; otherwise item ``i`` alone.
        alpha: the Beta distribution's parameter (YOLOv5: 32, so ``lam`` near 0.5).
        pad_value: fill where the other image does not cover.
    """

    def __init__(
        self,
        dataset: RawDataset,
        *,
        transforms: Transforms | None = None,
        prob: float = 0.15,
        alpha: float = 32.0,
        pad_value: int = YOLO_PAD_VALUE,
    ) -> None:
        super().__init__(dataset, transforms)
        self.prob = prob
        self.alpha = alpha
        self.pad_value = pad_value

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Item ``index`` blended with another: ``([H, W, 3] uint8, target)``, ``H, W`` item i's size."""
        image, target = self.dataset.load_raw(index)
        if random.random() >= self.prob:
            return image, target
        other_image, other_target = self.dataset.load_raw(random.randrange(len(self.dataset)))
        height, width = image.shape[:2]
        scale = min(height / other_image.shape[0], width / other_image.shape[1])
        other_image, other_target = _place(other_image, other_target, scale, (0, 0))
        h, w = other_image.shape[:2]
        canvas = np.full_like(image, self.pad_value)
        canvas[:h, :w] = other_image
        if "masks" in other_target:
            other_target["masks"] = _paste_masks(other_target["masks"], (height, width), (0, 0, w, h), (0, 0, w, h))
        require_finite_boxes(other_target["boxes"], _source(other_target), f"after {type(self).__name__}")
        lam = random.betavariate(self.alpha, self.alpha)
        blended = np.clip(np.rint(image * lam + canvas * (1.0 - lam)), 0, 255).astype(np.uint8)
        return blended, _concat_targets([target, other_target], target)
