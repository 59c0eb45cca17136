"""Toy data and an oracle detector for the evaluation tests (no detkit models needed).

Each image holds at most one filled rectangle per colour channel; the channel is the class. The
oracle "detects" a class by taking the bounding box and mask of its channel's lit pixels, so it
returns the ground truth exactly (with a constant, checkpointed score).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


class ToyShapes(Dataset):
    """``n`` images of ``size`` (H, W) with up to one rectangle per class (= channel).

    Exposes ``class_names``, ``label_to_category_id`` (non-contiguous ids, as in COCO) and
    ``image_ids``; ``ann_file`` is set by :meth:`write_coco` (so evaluators can use the file).
    """

    class_names = ["red", "green", "blue"]
    label_to_category_id = {0: 2, 1: 5, 2: 9}

    def __init__(self, n: int = 6, size: tuple[int, int] = (48, 64), seed: int = 0, difficult: bool = False) -> None:
        rng = np.random.default_rng(seed)
        height, width = size
        self.size = size
        self.items: list[list[tuple[int, list[int], bool]]] = []
        for _ in range(n):
            objects = []
            for c in range(3):
                if rng.random() < 0.8 or c == 0:
                    w, h = int(rng.integers(6, width // 2)), int(rng.integers(6, height // 2))
                    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
                    objects.append((c, [x, y, x + w, y + h], difficult and c == 2))
            self.items.append(objects)
        self.image_ids = [100 + i for i in range(n)]
        self.ann_file: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Any]]:
        height, width = self.size
        image = torch.zeros(3, height, width)
        masks = torch.zeros(len(self.items[i]), height, width, dtype=torch.uint8)
        for k, (c, (x1, y1, x2, y2), _) in enumerate(self.items[i]):
            image[c, y1:y2, x1:x2] = 1.0
            masks[k, y1:y2, x1:x2] = 1
        target = {
            "boxes": torch.tensor([box for _, box, _ in self.items[i]], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([c for c, _, _ in self.items[i]], dtype=torch.int64),
            "difficult": torch.tensor([d for _, _, d in self.items[i]], dtype=torch.bool),
            "iscrowd": torch.zeros(len(self.items[i]), dtype=torch.int64),
            "masks": masks,
            "image_id": self.image_ids[i],
            "orig_size": (height, width),
        }
        return image, target

    def write_coco(self, path: Path) -> Path:
        """Write the ground truth as a COCO annotation file (box-shaped masks as polygons)."""
        height, width = self.size
        images = [{"id": i, "height": height, "width": width, "file_name": f"{i}.png"} for i in self.image_ids]
        annotations = []
        for image_id, objects in zip(self.image_ids, self.items):
            for c, (x1, y1, x2, y2), _ in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0,
                    "category_id": self.label_to_category_id[c], "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float((x2 - x1) * (y2 - y1)),
                    "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
                })
        categories = [{"id": self.label_to_category_id[i], "name": n} for i, n in enumerate(self.class_names)]
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        self.ann_file = str(path)
        return path


def collate(batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``(list of images, list of targets)``, as detkit's ``collate_detection``."""
    return [b[0] for b in batch], [b[1] for b in batch]


def toy_loader(dataset: Dataset, batch_size: int = 2) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


class OracleDetector(nn.Module):
    """Finds the lit rectangle of each channel: boxes, labels, masks equal to the ground truth.

    Args:
        score: the score of every detection (a parameter, so checkpoints carry it).
        shift: pixels added to every box's x coordinates (to make it imperfect).
        masks: whether to predict masks.
    """

    def __init__(self, score: float = 0.9, shift: float = 0.0, masks: bool = True) -> None:
        super().__init__()
        self.score = nn.Parameter(torch.tensor(float(score)))
        self.shift = shift
        self.with_masks = masks
        self.calls_in_train_mode = 0
        self.calls_with_grad = 0

    def forward(self, images: list[Tensor], targets: Any = None) -> tuple[list[dict[str, Tensor]], dict]:
        self.calls_in_train_mode += int(self.training)
        self.calls_with_grad += int(torch.is_grad_enabled())
        predictions = []
        for image in images:
            boxes, labels, masks = [], [], []
            for c in range(image.shape[0]):
                lit = image[c] > 0.5
                if lit.any():
                    ys, xs = torch.nonzero(lit, as_tuple=True)
                    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                    boxes.append([x1 + self.shift, y1, x2 + self.shift, y2])
                    labels.append(c)
                    masks.append(lit.float())
            pred = {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "scores": self.score.detach().expand(len(boxes)).clone(),
            }
            if self.with_masks:
                pred["masks"] = torch.stack(masks) if masks else torch.zeros(0, *image.shape[1:])
            predictions.append(pred)
        return predictions, {}
