"""A toy detector for the inference tests (detkit.apis, tools/infer.py, tools/benchmark_video.py).

It follows the detector interface of docs/conventions.md and answers deterministically, relative
to each image's size, so tests can check that boxes come back in the coordinates of the given
image. It records the mean RGB colour and size of every image it sees (to check BGR/RGB handling
and batching). Test configs import it as ``apis_toys``: tests/ is on ``sys.path`` under pytest
(tests/conftest.py's folder); subprocesses need ``PYTHONPATH=tests``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The toy's detections: (x1, y1, x2, y2) as fractions of the image width/height, label, score.
TOY_DETECTIONS: tuple[tuple[tuple[float, float, float, float], int, float], ...] = (
    ((0.10, 0.20, 0.50, 0.60), 0, 0.9),
    ((0.50, 0.50, 0.90, 0.95), 1, 0.6),
    ((0.20, 0.05, 0.40, 0.30), 2, 0.3),
)
TOY_CLASS_NAMES = ("cat", "dog", "person")


class ToyDetector(nn.Module):
    """Returns :data:`TOY_DETECTIONS` scaled to each image, sorted by score.

    Args:
        num_classes: Number of classes (at least 3).
        class_names: Names of the classes (default :data:`TOY_CLASS_NAMES` and ``class3``...).
        with_masks: Also return ``masks [N, H, W]`` float probabilities (0.9 inside each box,
            0.1 outside).
        with_landmarks: Also return ``landmarks [N, 5, 2]`` (points inside each box).
        width: Channels of the toy's conv (its weights are what checkpoints hold).
        depth: Extra 3x3 convs run on every image (compute, for benchmarks; 0 for tests).
        max_pixels: Raise ``RuntimeError`` on an image with more pixels than this (a model
            running out of memory), None for no limit.
    """

    def __init__(self, num_classes: int = 3, class_names: list[str] | None = None,
                 with_masks: bool = False, with_landmarks: bool = False, width: int = 4,
                 depth: int = 0, max_pixels: int | None = None) -> None:
        super().__init__()
        if num_classes < 3:
            raise ValueError(f"the toy detector needs 3 classes or more, got {num_classes}")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [
            *TOY_CLASS_NAMES, *(f"class{i}" for i in range(3, num_classes))]
        self.with_masks = with_masks
        self.with_landmarks = with_landmarks
        self.max_pixels = max_pixels
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth)))
        self.seen_mean_rgb: list[list[float]] = []  # per image seen, in order
        self.seen_sizes: list[tuple[int, int]] = []
        self.batch_sizes: list[int] = []
        self.calls_in_inference_mode: list[bool] = []

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        self.batch_sizes.append(len(images))
        self.calls_in_inference_mode.append(torch.is_inference_mode_enabled())
        predictions = []
        for image in images:
            if image.dtype != torch.float32 or image.ndim != 3 or image.shape[0] != 3:
                raise TypeError(f"the toy wants [3, H, W] float32 images, got {image.dtype} "
                                f"{tuple(image.shape)}")
            if self.max_pixels is not None and image.shape[1] * image.shape[2] > self.max_pixels:
                raise RuntimeError(f"toy out of memory on a {tuple(image.shape)} image")
            self.seen_mean_rgb.append(image.mean(dim=(1, 2)).tolist())
            self.seen_sizes.append((int(image.shape[1]), int(image.shape[2])))
            if len(self.body):
                self.body(self.stem(image[None]))
            predictions.append(self._detections(image.shape[1], image.shape[2], image.device))
        return predictions, {}

    def _detections(self, height: int, width: int, device: torch.device) -> dict[str, Tensor]:
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = torch.tensor([box for box, _, _ in TOY_DETECTIONS]) * scale
        prediction = {
            "boxes": boxes,
            "labels": torch.tensor([label for _, label, _ in TOY_DETECTIONS], dtype=torch.int64),
            "scores": torch.tensor([score for _, _, score in TOY_DETECTIONS]),
        }
        if self.with_masks:
            masks = torch.full((len(boxes), height, width), 0.1)
            for mask, (x1, y1, x2, y2) in zip(masks, boxes.round().int().tolist()):
                mask[y1:y2, x1:x2] = 0.9
            prediction["masks"] = masks
        if self.with_landmarks:
            # eyes, nose, mouth corners at fixed fractions of each box
            fractions = torch.tensor([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75],
                                      [0.65, 0.75]])
            sizes = boxes[:, 2:] - boxes[:, :2]
            prediction["landmarks"] = boxes[:, None, :2] + fractions[None] * sizes[:, None]
        return {key: value.to(device) for key, value in prediction.items()}
