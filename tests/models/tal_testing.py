"""Random predictions and targets for the task-aligned assigner and YOLOv8 loss tests."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import torch
from torch import Tensor

STRIDES = (8, 16, 32)


def import_ultralytics_module(name: str):
    """``ultralytics.<name>``, with its settings folder in a temporary directory (never ~/.config);
    the test is skipped when ultralytics is not installed."""
    import pytest

    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_config_"))
    pytest.importorskip("ultralytics")
    return __import__(f"ultralytics.{name}", fromlist=["_"])


def grid_points(image_size: tuple[int, int], strides: Sequence[int] = STRIDES) -> tuple[Tensor, Tensor]:
    """Cell centres ``[A, 2]`` in pixels and the stride of each ``[A]``, levels in order."""
    points, point_strides = [], []
    for stride in strides:
        h, w = -(-image_size[0] // stride), -(-image_size[1] // stride)
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        points.append(torch.stack([xs, ys], -1).reshape(-1, 2) * stride)
        point_strides.append(torch.full((h * w,), float(stride)))
    return torch.cat(points), torch.cat(point_strides)


def random_targets(
    counts: Sequence[int], image_size: tuple[int, int], num_classes: int, generator: torch.Generator
) -> list[dict[str, Tensor]]:
    """Per image ``{"boxes" [N, 4] xyxy pixels inside the image, "labels" [N] int64}``; sizes from
    4 px (widened by the assigner) to most of the image, so that boxes overlap."""
    height, width = image_size
    targets = []
    for count in counts:
        size = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7]) + 4
        corner = torch.rand(count, 2, generator=generator) * (torch.tensor([width, height]) - size)
        boxes = torch.cat([corner, corner + size], 1)
        labels = torch.randint(num_classes, (count,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels})
    return targets


def padded_targets(targets: Sequence[dict[str, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """``(labels [B, M], boxes [B, M, 4], mask [B, M])`` zero-padded to the largest count."""
    most = max((len(t["boxes"]) for t in targets), default=0)
    labels = torch.zeros(len(targets), most, dtype=torch.int64)
    boxes = torch.zeros(len(targets), most, 4)
    mask = torch.zeros(len(targets), most, dtype=torch.bool)
    for i, target in enumerate(targets):
        n = len(target["boxes"])
        labels[i, :n], boxes[i, :n], mask[i, :n] = target["labels"], target["boxes"], True
    return labels, boxes, mask


def predicted_boxes_near(
    points: Tensor, batch: int, generator: torch.Generator, spread: float = 60.0
) -> Tensor:
    """``[B, A, 4]`` xyxy boxes around the points, sides 2..spread+2 px."""
    left_top = torch.rand(batch, len(points), 2, generator=generator) * spread + 1
    right_bottom = torch.rand(batch, len(points), 2, generator=generator) * spread + 1
    return torch.cat([points - left_top, points + right_bottom], -1)
