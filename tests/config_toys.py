"""Toy targets for the config tests: small nn.Modules and recorders, no detector code."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ToyBackbone(nn.Module):
    """A stack of ``depth`` 3x3 convs with ``width`` channels."""

    def __init__(self, in_channels: int = 3, depth: int = 2, width: int = 8,
                 act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1), act()]
        self.body = nn.Sequential(*layers)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ToyHead(nn.Module):
    """A 1x1 conv classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls = nn.Conv2d(in_channels, num_classes, 1)


class ToyDetector(nn.Module):
    """A backbone and a list of heads, with a pixel mean like the real detectors."""

    def __init__(self, backbone: nn.Module, heads: list[nn.Module],
                 pixel_mean: tuple[float, ...] = (0.0, 0.0, 0.0)) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)
        self.pixel_mean = tuple(pixel_mean)


class Recorder:
    """Keeps whatever keyword arguments it is given (a target that takes ``**kwargs``)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def make_schedule(steps: tuple[int, ...], gamma: float = 0.1) -> dict[str, Any]:
    """A plain function target."""
    return {"steps": list(steps), "gamma": gamma}
