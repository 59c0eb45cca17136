"""A toy detector, dataset, evaluator and hooks for the engine tests (no real detector code).

``ToyDetector`` follows the detector interface of docs/conventions.md: ``detector(images,
targets) -> (predictions, losses)``, each loss a mean over the batch, so a batch of ``2B`` gives
the same gradient as two batches of ``B`` averaged (what accumulation and DDP rely on). It has
no batch-dependent layer unless ``norm=True``.

Test configs import this module as ``toy_detector``: put ``tests/engine`` on ``PYTHONPATH``
(pytest does it for the tests here).
"""

from __future__ import annotations

import os
import random
import signal
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.engine.hooks import Hook


class ToyDetector(nn.Module):
    """Two strided convs, global pooling, then one box and class logits per image.

    Args:
        num_classes: Number of classes.
        width: Channels of the convs.
        norm: Put a BatchNorm after the first conv.
        nan_at_call: Make the losses NaN from this training forward call on (1-based).
        kill_at_call: SIGKILL the process at this training forward call (the crash of the
            resume test; set from the command line as ``model.kill_at_call=14``).
    """

    def __init__(self, num_classes: int = 3, width: int = 8, norm: bool = False,
                 nan_at_call: int | None = None, kill_at_call: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, stride=2, padding=1)]
        if norm:
            layers.append(nn.BatchNorm2d(width))
        layers += [nn.ReLU(), nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU()]
        self.backbone = nn.Sequential(*layers)
        self.box_head = nn.Linear(width, 4)
        self.cls_head = nn.Linear(width, num_classes)
        self.num_classes = num_classes
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.nan_at_call = nan_at_call
        self.kill_at_call = kill_at_call
        self.train_calls = 0

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        features = torch.stack([self.backbone(image[None]).mean(dim=(2, 3))[0] for image in images])
        sizes = torch.tensor([[i.shape[2], i.shape[1], i.shape[2], i.shape[1]] for i in images],
                             dtype=features.dtype, device=features.device)
        boxes = torch.sigmoid(self.box_head(features)) * sizes  # [B, 4] xyxy-ish, pixels
        logits = self.cls_head(features)  # [B, C]
        losses: dict[str, Tensor] = {}
        if targets is not None:
            goal = torch.stack([t["boxes"][0] for t in targets]) / sizes
            labels = torch.stack([t["labels"][0] for t in targets])
            losses = {"loss_box": F.smooth_l1_loss(boxes / sizes, goal, beta=0.1),
                      "loss_cls": F.cross_entropy(logits, labels)}
            if self.training:
                self.train_calls += 1
                if self.train_calls == self.kill_at_call:
                    os.kill(os.getpid(), signal.SIGKILL)
                if self.nan_at_call is not None and self.train_calls >= self.nan_at_call:
                    losses["loss_box"] = losses["loss_box"] * float("nan")
        predictions = []
        if not self.training:
            scores, labels = logits.softmax(dim=1).max(dim=1)
            predictions = [{"boxes": b[None], "scores": s[None], "labels": lab[None]}
                           for b, s, lab in zip(boxes, scores, labels)]
        return predictions, losses


class ToyDataset(torch.utils.data.Dataset):
    """Noise images with one bright rectangle; with ``augment`` a random flip and brightness
    drawn from torch, numpy and Python ``random`` (to test reproducible augmentation)."""

    def __init__(self, size: int = 16, image_size: int = 24, num_classes: int = 3,
                 augment: bool = False) -> None:
        self.size = size
        self.image_size = image_size
        self.num_classes = num_classes
        self.augment = augment
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.image_ids = list(range(size))
        self.label_to_category_id = {i: i + 1 for i in range(num_classes)}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        g = torch.Generator().manual_seed(index)
        s = self.image_size
        image = torch.rand(3, s, s, generator=g) * 0.3
        x1, y1 = torch.randint(0, s // 2, (2,), generator=g).tolist()
        w, h = torch.randint(4, s // 2, (2,), generator=g).tolist()
        image[:, y1:y1 + h, x1:x1 + w] += 0.6
        box = torch.tensor([[x1, y1, x1 + w, y1 + h]], dtype=torch.float32)
        label = torch.tensor([index % self.num_classes])
        if self.augment:
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
                box = torch.stack([s - box[:, 2], box[:, 1], s - box[:, 0], box[:, 3]], dim=1)
            image = image * float(np.random.uniform(0.8, 1.2)) + random.uniform(-0.05, 0.05)
        return image, {"boxes": box, "labels": label, "image_id": index}


class ToyEvaluator:
    """``{"bbox/AP50": 1 / (1 + mean L1 box error)}``, either as ``evaluate(model, loader)`` (what
    the trainer calls) or through reset / process / evaluate() (:func:`detkit.evaluation.evaluate`,
    what ``evaluate_config`` and ``detkit test`` use); both give the same number."""

    def __init__(self) -> None:
        self.errors: list[float] = []

    def reset(self) -> None:
        self.errors = []

    def process(self, targets: Any, predictions: Any) -> None:
        for prediction, target in zip(predictions, targets):
            self.errors.append((prediction["boxes"][0] - target["boxes"][0]).abs().mean().item())

    def evaluate(self, model: nn.Module | None = None, data_loader: Any = None) -> dict[str, float]:
        if model is not None:
            self.reset()
            for images, targets in data_loader:
                predictions, _ = model(images)
                self.process(targets, predictions)
        errors = self.errors
        return {"bbox/AP50": 1.0 / (1.0 + sum(errors) / len(errors)), "bbox/AP": 0.5}


class RecordingHook(Hook):
    """Records the iterations at which the trainer called it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def before_train(self, trainer: Any) -> None:
        self.calls.append(("before_train", trainer.iteration))

    def after_step(self, trainer: Any) -> None:
        self.calls.append(("after_step", trainer.iteration))

    def after_train(self, trainer: Any) -> None:
        self.calls.append(("after_train", trainer.iteration))
