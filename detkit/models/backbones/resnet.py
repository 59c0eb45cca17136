"""ResNet backbones (18/34/50/101/152), torchvision's ResNet v1.5 with its parameter names.

The blocks are torchvision's: BasicBlock (two 3x3 convs) and Bottleneck (1x1, 3x3, 1x1 with the
stride on the 3x3 conv, "ResNet v1.5"). Parameter names equal torchvision's ``resnet*`` state-dict
keys (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``,
``layer1.0.downsample.0.weight`` ...), so a torchvision checkpoint loads without remapping; its
``fc.*`` keys are reported as unexpected and ignored.

Levels: ``"c2"`` .. ``"c5"`` are the outputs of ``layer1`` .. ``layer4`` at strides 4, 8, 16, 32.
Layers deeper than the deepest requested level are not built.

Frozen stages: stage 1 is the stem (``conv1``, ``bn1``), stage ``k`` (2..5) is ``layer{k-1}``
(res2 .. res5). ``frozen_stages=k`` freezes stages 1..k. torchvision's detection
``trainable_layers=t`` (the number of trainable stages counted from the top) equals
``frozen_stages = 5 - t``; its default ``t=3`` is ``frozen_stages=2``, detkit's default too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from detkit.models.backbones.base import Backbone, ShapeSpec, select_levels
from detkit.models.layers import check_norm_kind, make_norm


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34).

    Args:
        in_channels: Input channels.
        width: Channels of both convs; the output has ``width * expansion`` channels.
        stride: Stride of the first conv.
        norm: Norm kind for :func:`~detkit.models.layers.make_norm`.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = make_norm(norm, width)
        self.conv2 = _conv3x3(width, out_channels)
        self.bn2 = make_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _make_downsample(in_channels, out_channels, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_channels, H, W]`` -> ``[B, width, H / stride, W / stride]``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision: saves an allocation per block
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, with a residual connection (ResNet-50+).

    Args:
        in_channels: Input channels.
        width: Channels of the 1x1 and 3x3 convs; the output has ``width * 4`` channels.
        stride: Stride of the 3x3 conv (torchvision's v1.5 placement).
        norm: Norm kind for :func:`~detkit.models.layers.make_norm`.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = make_norm(norm, width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = make_norm(norm, width)
        self.conv3 = _conv1x1(width, out_channels)
        self.bn3 = make_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _make_downsample(in_channels, out_channels, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_channels, H, W]`` -> ``[B, 4 * width, H / stride, W / stride]``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as torchvision: saves an allocation per block
        return self.relu(out)


def _make_downsample(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Sequential | None:
    """The projection shortcut (1x1 conv + norm, keys ``0.*``/``1.*``) when the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv1x1(in_channels, out_channels, stride), make_norm(norm, out_channels))


# depth -> (block class, number of blocks in res2..res5)
RESNET_SPECS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

_STAGE_WIDTHS = (64, 128, 256, 512)
_LEVELS = ("c2", "c3", "c4", "c5")


class ResNet(Backbone):
    """ResNet backbone returning ``"c2"`` .. ``"c5"`` feature maps.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_levels: Levels to return, among ``"c2"`` (stride 4), ``"c3"`` (8), ``"c4"`` (16),
            ``"c5"`` (32).
        norm: ``"frozen_bn"`` (default for detection), ``"bn"``, ``"syncbn"`` or ``"gn"``.
        frozen_stages: 0 freezes nothing, 1 the stem, ``k`` the stem and res2..res``k``
            (see the module docstring for torchvision's ``trainable_layers``).
        weights: Local checkpoint in torchvision's resnet key format, or None.

    Example:
        >>> backbone = ResNet(50, out_levels=("c3", "c4", "c5"))
        >>> backbone.output_shape()["c5"]
        ShapeSpec(channels=2048, stride=32)
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        out_levels: Sequence[str] = _LEVELS,
        norm: str = "frozen_bn",
        frozen_stages: int = 2,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}, got {depth}")
        check_norm_kind(norm)
        block, blocks_per_stage = RESNET_SPECS[depth]
        self.depth = depth

        available = {
            level: ShapeSpec(width * block.expansion, 2 ** (index + 2))
            for index, (level, width) in enumerate(zip(_LEVELS, _STAGE_WIDTHS))
        }
        levels = select_levels(out_levels, available, f"ResNet-{depth}")
        num_stages_built = _LEVELS.index(levels[-1]) + 1

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        self._stage_names: list[str] = []
        for index in range(num_stages_built):
            width, num_blocks = _STAGE_WIDTHS[index], blocks_per_stage[index]
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(num_blocks):
                blocks.append(block(in_channels, width, stride if block_index == 0 else 1, norm))
                in_channels = width * block.expansion
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self._stage_names.append(name)
        self._init_weights()

        stages = [[self.conv1, self.bn1]] + [[getattr(self, name)] for name in self._stage_names]
        stages += [[] for _ in range(5 - len(stages))]  # stages not built have nothing to freeze
        self._finish_init({level: available[level] for level in levels}, stages, frozen_stages, weights)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        features: dict[str, Tensor] = {}
        for level, name in zip(_LEVELS, self._stage_names):
            x = getattr(self, name)(x)
            if level in self._out_shapes:
                features[level] = x
        return features
