"""Batch collation for detection DataLoaders (conventions.md).

Detection images differ in size and targets in length, so the default collate (which stacks)
does not apply. Two collate functions:

* :func:`collate_detection` keeps lists: ``(list[Tensor [3, H_i, W_i]], list[dict])``; the model
  resizes and pads itself (R-CNNs).
* :func:`collate_padded` pads into an :class:`~detkit.structures.ImageList` for families that
  take a fixed-size tensor batch (SSD, YOLO): ``functools.partial(collate_padded, size_divisibility=32)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ..structures import ImageList

__all__ = ["collate_detection", "collate_padded"]


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Any]]]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``, nothing stacked.

    Args:
        batch: dataset items, images ``[3, H_i, W_i]`` float.

    Returns:
        The images and the targets as two lists in batch order.
    """
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


def collate_padded(
    batch: Sequence[tuple[Tensor, dict[str, Any]]], size_divisibility: int = 0, pad_value: float = 0.0
) -> tuple[ImageList, list[dict[str, Any]]]:
    """Pad the images of ``batch`` to one ``[B, 3, H_max, W_max]`` tensor (bottom and right,
    rounded up to a multiple of ``size_divisibility``); targets are unchanged (their boxes stay
    valid because padding is at the bottom and right).

    Returns:
        ``(ImageList, targets)``; ``ImageList.image_sizes`` holds each image's unpadded size.
    """
    images, targets = collate_detection(batch)
    return ImageList.from_tensors(images, size_divisibility=size_divisibility, pad_value=pad_value), targets
