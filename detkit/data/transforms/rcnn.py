"""R-CNN pipelines: flip, optional colour jitter and multi-scale shortest-edge resize.

R-CNN models resize themselves, so the default training pipeline does not resize and the test
pipeline only converts the image to a tensor. The model normalises pixels itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from .common import DetectionTransform

__all__ = ["ResizeShortestEdge", "rcnn_test_transforms", "rcnn_train_transforms"]


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

    def apply_to_keypoints(self, keypoints: np.ndarray, new_size: tuple[int, int], **params: Any) -> np.ndarray:
        # albumentations' keypoints are pixel indices (pixel i centred at i, not i + 0.5): scale
        # about the pixel corner, as the boxes, so continuous x goes to x * scale exactly.
        height, width = params["shape"][:2]
        scaled = np.array(keypoints, dtype=np.float64, copy=True)
        scaled[:, 0] = (scaled[:, 0] + 0.5) * (new_size[1] / width) - 0.5
        scaled[:, 1] = (scaled[:, 1] + 0.5) * (new_size[0] / height) - 0.5
        return scaled

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("short_edge_lengths", "max_size")


def rcnn_train_transforms(
    *,
    flip_prob: float = 0.5,
    photometric: bool = False,
    short_edge_lengths: Sequence[int] | None = None,
    max_size: int = 1333,
    drop_crowd: bool = True,
    keypoint_flip_pairs: Sequence[Sequence[int]] | None = None,
    seed: int | None = None,
) -> DetectionTransform:
    """Faster/Mask/Keypoint R-CNN training: horizontal flip, optional colour jitter, optional
    multi-scale shortest-edge resize (``short_edge_lengths``, e.g. ``(640, 672, ..., 800)``; without
    it the model's own resize sets the scale). Crowd boxes dropped. Targets with keypoints need
    ``keypoint_flip_pairs`` (the left / right keypoints a flip swaps)."""
    transforms: list[A.BasicTransform] = []
    if short_edge_lengths:
        transforms.append(ResizeShortestEdge(short_edge_lengths, max_size))
    if photometric:
        transforms.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8))
    transforms.append(A.HorizontalFlip(p=flip_prob))
    return DetectionTransform(transforms, drop_crowd=drop_crowd, keypoint_flip_pairs=keypoint_flip_pairs, seed=seed)


def rcnn_test_transforms() -> DetectionTransform:
    """R-CNN evaluation and inference: conversion to a tensor only (the model resizes; crowd
    boxes kept for evaluation)."""
    return DetectionTransform([])
