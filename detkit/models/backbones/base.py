"""The backbone contract: images in, feature maps keyed by level name out.

A backbone maps normalised images ``[B, 3, H, W]`` (float) to a dict of feature maps keyed by level
name. ``"cK"`` is the last feature map at stride ``2**K`` (``"c2"`` .. ``"c5"`` at strides 4 .. 32);
a backbone may offer other named taps (MobileNet's ``"c4_expand"``). ``output_shape()`` reports
channels and nominal stride per returned level so that a neck or head can size itself; the actual
spatial size of a level is ``ceil(H / stride)`` for the usual padded convs, and the dict is ordered
from the shallowest level to the deepest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from detkit.models.layers import freeze_module
from detkit.utils.checkpoint import LoadReport, load_weights
from detkit.structures import ShapeSpec  # defined with the other exchange formats; re-exported here

__all__ = ["Backbone", "ShapeSpec", "select_levels"]


def select_levels(requested: Iterable[str], available: Mapping[str, ShapeSpec], owner: str) -> tuple[str, ...]:
    """Checks requested level names against the available ones.

    Args:
        requested: Level names asked for, in any order.
        available: Every level the backbone can return, shallowest first.
        owner: Name of the backbone, for the error message.

    Returns:
        The requested names without duplicates, ordered as in ``available`` (shallowest first).

    Raises:
        ValueError: When nothing is requested or a name is not available; the message names the
            level and the available ones.
    """
    if isinstance(requested, str):
        requested = (requested,)
    requested = list(requested)
    if not requested:
        raise ValueError(f"{owner}: out_levels is empty; available levels: {list(available)}")
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ValueError(
            f"{owner} has no level(s) {unknown}; available levels: {list(available)}"
        )
    wanted = set(requested)
    return tuple(name for name in available if name in wanted)


class Backbone(nn.Module):
    """Base class of the backbones.

    Subclasses build their layers, then call :meth:`_finish_init` with the shapes of the levels
    they return and the modules of each stage; they implement :meth:`_forward_features`.

    Attributes:
        out_levels: Names of the returned levels, shallowest first.
        load_report: What :func:`~detkit.utils.checkpoint.load_weights` found when ``weights`` was
            given, else None.
    """

    in_channels: int = 3

    def __init__(self) -> None:
        super().__init__()
        self.out_levels: tuple[str, ...] = ()
        self._out_shapes: dict[str, ShapeSpec] = {}
        self._frozen: list[nn.Module] = []
        self.load_report: LoadReport | None = None

    def _finish_init(
        self,
        out_shapes: Mapping[str, ShapeSpec],
        stages: Sequence[Sequence[nn.Module]],
        frozen_stages: int,
        weights: str | Path | None,
    ) -> None:
        """Records the returned levels, loads ``weights`` and freezes the first stages.

        Args:
            out_shapes: Shape of every returned level, shallowest first.
            stages: Modules of stage 1, 2, ...; stage ``k`` is frozen when ``k <= frozen_stages``.
            frozen_stages: Number of leading stages to freeze, ``0 <= frozen_stages <= len(stages)``.
            weights: Local checkpoint path in torchvision's key format, or None.
        """
        name = type(self).__name__
        if not 0 <= frozen_stages <= len(stages):
            raise ValueError(f"{name}: frozen_stages must be in [0, {len(stages)}], got {frozen_stages}")
        self.out_levels = tuple(out_shapes)
        self._out_shapes = dict(out_shapes)
        if weights is not None:
            self.load_report = load_weights(self, weights)
        self._frozen = [module for stage in stages[:frozen_stages] for module in stage]
        for module in self._frozen:
            freeze_module(module)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and stride of each returned level, shallowest first."""
        return dict(self._out_shapes)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned level, shallowest first (e.g. an SSD head's ``in_channels``)."""
        return [shape.channels for shape in self.output_shape().values()]

    def train(self, mode: bool = True) -> Backbone:
        """Sets train mode, keeping frozen stages in eval mode (their BatchNorm statistics fixed)."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Computes the feature maps.

        Args:
            images: Normalised images, float ``[B, 3, H, W]``.

        Returns:
            ``{level: [B, C_level, ~H/stride, ~W/stride]}`` for each name in ``out_levels``,
            shallowest first.
        """
        self._check_images(images)
        return self._forward_features(images)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def _check_images(self, images: Tensor) -> None:
        name = type(self).__name__
        expected = f"float images of shape [B, {self.in_channels}, H, W]"
        if not isinstance(images, Tensor):
            raise TypeError(f"{name} expects {expected}, got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"{name} expects {expected}, got shape {list(images.shape)}")
        if not torch.is_floating_point(images):
            raise TypeError(
                f"{name} expects {expected} (normalised pixels), got dtype {images.dtype}; "
                "convert with images.float() and normalise first"
            )
