"""Darknet backbones of YOLOv3: Darknet-53 and the tiny darknet of YOLOv3-tiny.

Both are built from darknet's convolution unit, :func:`darknet_conv`: a bias-free conv with "same"
padding (darknet's ``pad=1`` means ``padding = size // 2``), batch norm and LeakyReLU(0.1). Level
``"cK"`` is the last feature map at stride ``2**K``.

- :class:`Darknet53` (``yolov3.cfg`` layers 0..74): a 3x3 stem then five stages, each a stride-2
  3x3 conv followed by 1, 2, 8, 8, 4 residual blocks (1x1 halving conv, 3x3 conv, and darknet's
  ``[shortcut] from=-3 activation=linear``: a plain sum with the block's input). ``c3``/``c4``/``c5``
  are darknet's layers 36, 61 and 74, the targets of the ``[route]`` layers of the neck.
- :class:`DarknetTiny` (``yolov3-tiny.cfg`` layers 0..12): seven 3x3 convs with max pools between
  them. ``c4`` is layer 8 (256 channels, stride 16), ``c5`` layer 12 (1024 channels, stride 32).
  The sixth pool has ``size=2 stride=1``: darknet computes a pool's output size as
  ``(in + padding - size) / stride + 1`` with ``padding = size - 1`` by default and offsets the
  window by ``-padding / 2`` (integer division: 0 for size 2), skipping cells outside the input.
  So a 2x2 window at ``(y, x)`` covers ``(y..y+1, x..x+1)`` and the last row and column see only
  the valid cells: the map keeps its size. :class:`DarknetMaxPool` reproduces this by padding the
  right and bottom with ``-inf`` (the same output as OpenCV's darknet importer, which pads "SAME").

Every conv is listed in darknet's cfg order by ``darknet_convs()``, which the ``.weights``
reader/writer (:mod:`detkit.models.convert.darknet`) walks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.base import Backbone, ShapeSpec, select_levels
from detkit.models.layers import ConvNormAct, check_norm_kind

# darknet's "leaky" activation: slope 0.1 for negative inputs.
LeakyReLU01 = functools.partial(nn.LeakyReLU, 0.1)

# darknet normalises with (x - mean) / (sqrt(var) + .000001); eps=1e-6 inside the square root
# gives the same numbers to float precision for any variance that is not tiny.
DARKNET_BN_EPS = 1e-6

ConvPair = tuple[nn.Conv2d, "nn.Module | None"]


def darknet_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *, norm: str = "bn"
) -> ConvNormAct:
    """darknet's ``[convolutional] batch_normalize=1 pad=1 activation=leaky`` unit.

    Args:
        in_channels: Input channels ``C_in`` of ``[B, C_in, H, W]``.
        out_channels: Output channels (darknet's ``filters``).
        kernel_size: Square kernel size (``size``), padded by ``kernel_size // 2``.
        stride: Conv stride.
        norm: Norm kind for :func:`detkit.models.layers.make_norm`.

    Returns:
        ``ConvNormAct`` whose ``[0]`` is the conv and ``[1]`` the norm.
    """
    return ConvNormAct(
        in_channels, out_channels, kernel_size, stride, norm=norm, norm_eps=DARKNET_BN_EPS, activation=LeakyReLU01
    )


def conv_pair(unit: ConvNormAct) -> ConvPair:
    """``(conv, norm or None)`` of a :class:`ConvNormAct`, the unit of darknet's weight file."""
    conv = unit[0]
    # A norm layer has running statistics; after YOLOv3.fuse() slot 1 is an Identity.
    norm = unit[1] if len(unit) > 1 and hasattr(unit[1], "running_var") else None
    return conv, norm


class DarknetMaxPool(nn.Module):
    """darknet's ``[maxpool]``: output size ``ceil(in / stride)``, windows cut at the border.

    Pads ``(size - 1) // 2`` before and what the last window needs after with ``-inf`` (cells
    outside the input never win), then max-pools without padding.

    Args:
        size: Window size.
        stride: Step.
    """

    def __init__(self, size: int, stride: int) -> None:
        super().__init__()
        self.size = size
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """Pools ``[B, C, H, W]`` to ``[B, C, ceil(H / stride), ceil(W / stride)]``."""
        before = (self.size - 1) // 2
        height, width = x.shape[-2:]
        pad_h = (math.ceil(height / self.stride) - 1) * self.stride + self.size - height - before
        pad_w = (math.ceil(width / self.stride) - 1) * self.stride + self.size - width - before
        if before or pad_h or pad_w:
            x = F.pad(x, (before, pad_w, before, pad_h), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}"


class DarknetResidual(nn.Module):
    """Darknet-53's residual block: ``x + conv3x3(conv1x1(x))``; channels ``C -> C/2 -> C``.

    Args:
        channels: Channels ``C`` of input and output.
        norm: Norm kind.
    """

    def __init__(self, channels: int, norm: str = "bn") -> None:
        super().__init__()
        self.conv1 = darknet_conv(channels, channels // 2, 1, norm=norm)
        self.conv2 = darknet_conv(channels // 2, channels, 3, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        return x + self.conv2(self.conv1(x))


class Darknet53(Backbone):
    """Darknet-53 (Redmon & Farhadi 2018), the backbone of YOLOv3.

    Levels ``c1``..``c5`` with 64, 128, 256, 512, 1024 channels at strides 2..32.

    Args:
        out_levels: Levels to return, default the three YOLOv3 uses.
        norm: Norm kind (``"bn"`` to train, ``"frozen_bn"`` to keep loaded statistics).
        frozen_stages: Number of leading stages to freeze (stage 1 includes the stem), 0..5.
        weights: Optional local checkpoint in detkit's key format.
    """

    STAGE_CHANNELS = (64, 128, 256, 512, 1024)
    STAGE_BLOCKS = (1, 2, 8, 8, 4)

    def __init__(
        self,
        out_levels: Sequence[str] = ("c3", "c4", "c5"),
        norm: str = "bn",
        frozen_stages: int = 0,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_norm_kind(norm)
        available = {
            f"c{k + 1}": ShapeSpec(channels, 2 ** (k + 1)) for k, channels in enumerate(self.STAGE_CHANNELS)
        }
        levels = select_levels(out_levels, available, "Darknet53")
        self.stem = darknet_conv(3, 32, 3, norm=norm)
        stages = []
        in_channels = 32
        for channels, blocks in zip(self.STAGE_CHANNELS, self.STAGE_BLOCKS):
            stages.append(
                nn.Sequential(
                    darknet_conv(in_channels, channels, 3, 2, norm=norm),
                    *(DarknetResidual(channels, norm) for _ in range(blocks)),
                )
            )
            in_channels = channels
        self.stages = nn.ModuleList(stages)
        self._last_stage = int(levels[-1][1:])
        groups = [[self.stem, self.stages[0]]] + [[stage] for stage in self.stages[1:]]
        self._finish_init({name: available[name] for name in levels}, groups, frozen_stages, weights)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        x = self.stem(images)
        outputs = {}
        for index, stage in enumerate(self.stages[: self._last_stage]):
            x = stage(x)
            name = f"c{index + 1}"
            if name in self.out_levels:
                outputs[name] = x
        return outputs

    def darknet_convs(self) -> list[ConvPair]:
        """``(conv, bn)`` pairs in ``yolov3.cfg`` order (layers 0..74)."""
        pairs = [conv_pair(self.stem)]
        for stage in self.stages:
            pairs.append(conv_pair(stage[0]))
            for block in stage[1:]:
                pairs += [conv_pair(block.conv1), conv_pair(block.conv2)]
        return pairs


class DarknetTiny(Backbone):
    """The backbone of YOLOv3-tiny: 3x3 convs of 16..1024 channels with max pools between them.

    Levels ``c0``..``c5`` with 16, 32, 64, 128, 256, 1024 channels at strides 1..32 (``c5`` is
    the last conv, after the 512-channel conv, the stride-2 pool and the stride-1 pool).

    Args:
        out_levels: Levels to return, default the two YOLOv3-tiny uses.
        norm: Norm kind.
        frozen_stages: Number of leading convs (with their pools) to freeze, 0..7.
        weights: Optional local checkpoint in detkit's key format.
    """

    CHANNELS = (16, 32, 64, 128, 256, 512, 1024)

    def __init__(
        self,
        out_levels: Sequence[str] = ("c4", "c5"),
        norm: str = "bn",
        frozen_stages: int = 0,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_norm_kind(norm)
        available = {f"c{k}": ShapeSpec(c, 2**k) for k, c in enumerate(self.CHANNELS[:5])}
        available["c5"] = ShapeSpec(1024, 32)
        levels = select_levels(out_levels, available, "DarknetTiny")
        convs = []
        in_channels = 3
        for channels in self.CHANNELS:
            convs.append(darknet_conv(in_channels, channels, 3, norm=norm))
            in_channels = channels
        self.convs = nn.ModuleList(convs)
        # A pool follows each of the first six convs; the sixth keeps the size (see module doc).
        self.pools = nn.ModuleList(DarknetMaxPool(2, 2 if k < 5 else 1) for k in range(6))
        stages = [[self.convs[k], self.pools[k]] for k in range(6)] + [[self.convs[6]]]
        self._finish_init({name: available[name] for name in levels}, stages, frozen_stages, weights)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        outputs = {}
        x = images
        # Level of the conv output k: c0..c4 for k = 0..4; conv 5 (512) has no level; conv 6 is c5.
        names = ("c0", "c1", "c2", "c3", "c4", None, "c5")
        last = self.out_levels[-1]
        for k, conv in enumerate(self.convs):
            x = conv(x)
            if names[k] in self.out_levels:
                outputs[names[k]] = x
                if names[k] == last:
                    break
            x = self.pools[k](x)
        return outputs

    def darknet_convs(self) -> list[ConvPair]:
        """``(conv, bn)`` pairs in ``yolov3-tiny.cfg`` order (layers 0, 2, .., 12)."""
        return [conv_pair(conv) for conv in self.convs]


__all__ = ["Darknet53", "DarknetMaxPool", "DarknetResidual", "DarknetTiny", "darknet_conv", "conv_pair", "LeakyReLU01"]
