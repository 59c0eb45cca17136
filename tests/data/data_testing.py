"""Paths and helpers shared by the tests of detkit.data (imported as ``data_testing``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES_DIR = FIXTURES / "images"
VOC_SAMPLE = FIXTURES / "voc_sample" / "VOCdevkit"
COCO_VAL_100 = FIXTURES / "coco_eval" / "instances_val2014_100.json"


def mask_boxes(masks: Tensor) -> Tensor:
    """``[N, H, W]`` masks -> ``[N, 4]`` bounding boxes (continuous xyxy: ``x2 = last column + 1``).

    NumPy, not torch: tiny reductions in torch are slow when the test machine is busy."""
    boxes = []
    for mask in masks.numpy():
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def nonempty_masks(masks: Tensor) -> Tensor:
    """``[N]`` bool: which of ``[N, H, W]`` masks have a pixel set."""
    return torch.from_numpy(masks.numpy().reshape(len(masks), -1).any(axis=1))
