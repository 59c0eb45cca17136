"""MobileNetV2 and MobileNetV3-Large backbones, torchvision's layers and parameter names.

Both keep torchvision's ``features`` ``nn.Sequential`` (stem conv, inverted-residual blocks, last
1x1 conv) with the same sub-module layout, so keys are ``features.N....`` and torchvision's ImageNet
checkpoints load without remapping (``classifier.*`` is reported as unexpected).

Levels (``"cK"`` is the last map at stride ``2**K``):

==============  =============================================  =========  =========
level           tap                                            V2         V3-Large
==============  =============================================  =========  =========
``c2``          last block at stride 4                         24 ch      24 ch
``c3``          last block at stride 8                         32 ch      40 ch
``c4``          last block at stride 16                        96 ch      112 ch
``c5``          last 1x1 conv (``features[-1]``), stride 32    1280 ch    960 ch
``c5_entry``    first block at stride 32, stride 32            160 ch     160 ch
``c4_expand``   1x1 expansion conv of that block, stride 16    576 ch     672 ch
==============  =============================================  =========  =========

torchvision's detection models tap MobileNet in two ways, both reproducible here:

- ``mobilenet_backbone(..., fpn=True)`` (``fasterrcnn_mobilenet_v3_large_fpn``) returns, by default,
  the outputs of the blocks at ``stage_indices[num_stages - 2]`` and ``stage_indices[-1]``, where
  ``stage_indices`` are 0, the strided (``_is_cn``) blocks and the last layer: the first stride-32
  block and the last conv, both at stride 32. That is ``out_levels=("c5_entry", "c5")``.
- SSDLite (``ssdlite320_mobilenet_v3_large``) taps the "C4 expansion layer" of the MobileNetV3
  paper (section 6.3): the expansion 1x1 conv of the first stride-32 block, at stride 16, and the
  last conv. That is ``out_levels=("c4_expand", "c5")``.

The default is ``("c3", "c4", "c5")``, the conventional strides 8/16/32 for an FPN.

Frozen stages: stage ``k`` is every layer of ``features`` whose output stride is ``2**k`` (stage 1:
the stem and the stride-2 blocks); ``frozen_stages=k`` freezes stages 1..k. torchvision's
``trainable_layers=t`` (2 <= t <= 6) equals ``frozen_stages = 6 - t``; its detection default
``t=3`` is ``frozen_stages=3``, detkit's default.

Normalisation: MobileNetV3 was trained with BatchNorm ``eps=1e-3`` (torchvision's classifier uses
it), so detkit's MobileNetV3 uses ``norm_eps=1e-3`` for every norm kind by default; torchvision's
detection wrapper builds it with ``FrozenBatchNorm2d`` at ``eps=1e-5``: pass ``norm_eps=1e-5`` to
match that exactly. MobileNetV2 uses 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from torch import Tensor, nn

from detkit.models.backbones.base import Backbone, ShapeSpec, select_levels
from detkit.models.layers import ConvNormAct, check_norm_kind, make_norm


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a channel count to a multiple of ``divisor``, never more than 10% down.

    The rule of the TensorFlow MobileNet reference code, which torchvision follows.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SqueezeExcitation(nn.Module):
    """Channel attention: global pool, 1x1 conv down, ReLU, 1x1 conv up, hard sigmoid, scale.

    Keys ``fc1.*``/``fc2.*`` as in torchvision's ``SqueezeExcitation``.

    Args:
        channels: Input (and output) channels.
        squeeze_channels: Channels of the bottleneck.
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU(inplace=True)
        self.scale_activation = nn.Hardsigmoid(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``, each channel scaled by a weight in [0, 1]."""
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class InvertedResidual(nn.Module):
    """MobileNet block: 1x1 expansion, depthwise kxk (strided), optional SE, 1x1 projection.

    The expansion conv exists only when ``expanded_channels != in_channels``. The layers live in
    torchvision's attribute: ``conv`` for V2 (projection as a bare conv and norm: ``conv.N``,
    ``conv.N+1``), ``block`` for V3 (projection as a conv-norm pair: ``block.N.0``, ``block.N.1``).

    Args:
        in_channels: Input channels.
        expanded_channels: Channels of the depthwise conv.
        out_channels: Output channels.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride (1 or 2).
        activation: Activation class after the expansion and depthwise convs.
        use_se: Whether to add squeeze-excitation after the depthwise conv (V3).
        norm: Norm kind.
        norm_eps: Norm ``eps``.
        version: 2 or 3, for torchvision's key layout.
    """

    def __init__(
        self,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        stride: int,
        activation: type[nn.Module],
        use_se: bool,
        norm: str,
        norm_eps: float,
        version: int,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if version not in (2, 3):
            raise ValueError(f"version must be 2 or 3, got {version}")
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.has_expansion = expanded_channels != in_channels
        self.expanded_channels = expanded_channels
        self.out_channels = out_channels
        conv = partial(ConvNormAct, norm=norm, norm_eps=norm_eps)
        layers: list[nn.Module] = []
        if self.has_expansion:
            layers.append(conv(in_channels, expanded_channels, 1, activation=activation))
        depthwise = conv(
            expanded_channels, expanded_channels, kernel_size, stride, groups=expanded_channels, activation=activation
        )
        layers.append(depthwise)
        if use_se:
            layers.append(SqueezeExcitation(expanded_channels, make_divisible(expanded_channels // 4)))
        if version == 2:
            layers.append(nn.Conv2d(expanded_channels, out_channels, 1, bias=False))
            layers.append(make_norm(norm, out_channels, eps=norm_eps))
        else:
            layers.append(conv(expanded_channels, out_channels, 1, activation=None))
        self.layers_name = "conv" if version == 2 else "block"
        self.add_module(self.layers_name, nn.Sequential(*layers))

    @property
    def layers(self) -> nn.Sequential:
        """The block's layer sequence (``self.conv`` for V2, ``self.block`` for V3)."""
        return getattr(self, self.layers_name)

    def forward_with_expansion(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Runs the block and also returns the output of its expansion conv.

        Args:
            x: ``[B, in_channels, H, W]``.

        Returns:
            ``(out [B, out_channels, H/stride, W/stride], expanded [B, expanded_channels, H, W])``.
        """
        if not self.has_expansion:
            raise ValueError("this block has no expansion conv")
        expanded = self.layers[0](x)
        out = expanded
        for layer in self.layers[1:]:
            out = layer(out)
        if self.use_res_connect:
            out = out + x
        return out, expanded

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_channels, H, W]`` -> ``[B, out_channels, H / stride, W / stride]``."""
        out = self.layers(x)
        return out + x if self.use_res_connect else out


class _MobileNet(Backbone):
    """Shared level bookkeeping, freezing and forward of the MobileNet backbones.

    Subclasses build ``features`` (stem conv with stride 2, blocks, last 1x1 conv) and pass it to
    :meth:`_setup`.
    """

    def _setup(
        self,
        layers: list[nn.Module],
        out_levels: Sequence[str],
        frozen_stages: int,
        weights: str | Path | None,
    ) -> None:
        # Output stride of each layer of `features`: the stem has stride 2, blocks their own
        # stride, the last 1x1 conv stride 1.
        strides, stride = [], 1
        for index, layer in enumerate(layers):
            stride *= 2 if index == 0 else getattr(layer, "stride", 1)
            strides.append(stride)
        entry32 = strides.index(32)  # first block at stride 32
        taps: dict[str, tuple[int, ShapeSpec]] = {}
        for level in (2, 3, 4):
            last = max(i for i, s in enumerate(strides) if s == 2**level)
            taps[f"c{level}"] = (last, ShapeSpec(layers[last].out_channels, 2**level))
        taps["c4_expand"] = (entry32, ShapeSpec(layers[entry32].expanded_channels, 16))
        taps["c5_entry"] = (entry32, ShapeSpec(layers[entry32].out_channels, 32))
        taps["c5"] = (len(layers) - 1, ShapeSpec(layers[-1].out_channels, 32))
        available = {name: taps[name][1] for name in ("c2", "c3", "c4_expand", "c4", "c5_entry", "c5")}

        levels = select_levels(out_levels, available, type(self).__name__)
        num_layers_built = max(taps[level][0] for level in levels) + 1
        self._taps = {level: taps[level][0] for level in levels}
        self._expand_tap_layer = entry32 if "c4_expand" in levels else -1
        self.features = nn.Sequential(*layers[:num_layers_built])
        self._init_weights()
        stages = [[layer for layer, s in zip(self.features, strides) if s == 2**k] for k in range(1, 6)]
        self._finish_init({level: available[level] for level in levels}, stages, frozen_stages, weights)

    def _init_weights(self) -> None:
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        found: dict[str, Tensor] = {}
        x = images
        for index, layer in enumerate(self.features):
            if index == self._expand_tap_layer:
                x, found["c4_expand"] = layer.forward_with_expansion(x)
            else:
                x = layer(x)
            for level, tap in self._taps.items():
                if tap == index and level != "c4_expand":
                    found[level] = x
        return {level: found[level] for level in self.out_levels}


# (expand ratio, output channels, number of blocks, stride of the first block)
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(_MobileNet):
    """MobileNetV2 backbone (torchvision's ``mobilenet_v2().features``).

    Args:
        out_levels: Levels to return, see the module docstring (default strides 8/16/32).
        width_mult: Channel multiplier of the blocks (1.0 for the ImageNet weights).
        norm: ``"frozen_bn"`` (default), ``"bn"``, ``"syncbn"`` or ``"gn"``.
        norm_eps: Norm ``eps``.
        frozen_stages: See the module docstring.
        weights: Local checkpoint in torchvision's mobilenet_v2 key format, or None.
    """

    def __init__(
        self,
        *,
        out_levels: Sequence[str] = ("c3", "c4", "c5"),
        width_mult: float = 1.0,
        norm: str = "frozen_bn",
        norm_eps: float = 1e-5,
        frozen_stages: int = 3,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_norm_kind(norm)
        in_channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [
            ConvNormAct(3, in_channels, 3, 2, norm=norm, norm_eps=norm_eps, activation=nn.ReLU6)
        ]
        for expand_ratio, channels, num_blocks, first_stride in MOBILENET_V2_SETTING:
            out_channels = make_divisible(channels * width_mult)
            for block_index in range(num_blocks):
                layers.append(
                    InvertedResidual(
                        in_channels,
                        int(round(in_channels * expand_ratio)),
                        out_channels,
                        kernel_size=3,
                        stride=first_stride if block_index == 0 else 1,
                        activation=nn.ReLU6,
                        use_se=False,
                        norm=norm,
                        norm_eps=norm_eps,
                        version=2,
                    )
                )
                in_channels = out_channels
        last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers.append(ConvNormAct(in_channels, last_channels, 1, norm=norm, norm_eps=norm_eps, activation=nn.ReLU6))
        self._setup(layers, out_levels, frozen_stages, weights)


# (kernel, expanded channels, output channels, squeeze-excitation, activation, stride)
MOBILENET_V3_LARGE_SETTING = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)


# The last three blocks of MOBILENET_V3_LARGE_SETTING form the tail that ``reduced_tail`` halves.
MOBILENET_V3_TAIL_START = len(MOBILENET_V3_LARGE_SETTING) - 3


def mobilenet_v3_large_layers(
    width_mult: float, norm: str, norm_eps: float, reduced_tail: bool = False
) -> list[nn.Module]:
    """MobileNetV3-Large's ``features`` (stem, inverted residuals, last 1x1 conv), torchvision's layout.

    Args:
        width_mult: channel multiplier (1.0 for the ImageNet weights).
        norm: norm kind for :func:`~detkit.models.layers.make_norm`.
        norm_eps: norm ``eps``.
        reduced_tail: halve the last stage (torchvision's ``_mobilenet_v3_conf(reduced_tail=True)``,
            used by SSDLite): the entry block keeps its 672-channel expansion (SSDLite's C4 tap) and
            halves its output; the later blocks halve both.

    Returns:
        The layers in order, ready for ``nn.Sequential`` (keys ``features.<i>``).
    """
    divider = 2 if reduced_tail else 1
    in_channels = make_divisible(16 * width_mult)
    layers: list[nn.Module] = [
        ConvNormAct(3, in_channels, 3, 2, norm=norm, norm_eps=norm_eps, activation=nn.Hardswish)
    ]
    for index, (kernel, expanded, channels, use_se, activation, stride) in enumerate(MOBILENET_V3_LARGE_SETTING):
        if index >= MOBILENET_V3_TAIL_START:
            channels //= divider
            expanded = expanded // divider if index > MOBILENET_V3_TAIL_START else expanded
        out_channels = make_divisible(channels * width_mult)
        layers.append(
            InvertedResidual(
                in_channels,
                make_divisible(expanded * width_mult),
                out_channels,
                kernel_size=kernel,
                stride=stride,
                activation=nn.Hardswish if activation == "HS" else nn.ReLU,
                use_se=use_se,
                norm=norm,
                norm_eps=norm_eps,
                version=3,
            )
        )
        in_channels = out_channels
    layers.append(ConvNormAct(in_channels, 6 * in_channels, 1, norm=norm, norm_eps=norm_eps, activation=nn.Hardswish))
    return layers


class MobileNetV3(_MobileNet):
    """MobileNetV3-Large backbone (torchvision's ``mobilenet_v3_large().features``).

    Args:
        out_levels: Levels to return, see the module docstring; ``("c5_entry", "c5")``
            reproduces torchvision's MobileNetV3-FPN taps, ``("c4_expand", "c5")`` SSDLite's.
        width_mult: Channel multiplier (1.0 for the ImageNet weights).
        norm: ``"frozen_bn"`` (default), ``"bn"`` (momentum 0.01 as torchvision), ``"syncbn"``
            or ``"gn"``.
        norm_eps: Norm ``eps``; 1e-3 as in training (see the module docstring).
        frozen_stages: See the module docstring.
        weights: Local checkpoint in torchvision's mobilenet_v3_large key format, or None.
    """

    def __init__(
        self,
        *,
        out_levels: Sequence[str] = ("c3", "c4", "c5"),
        width_mult: float = 1.0,
        norm: str = "frozen_bn",
        norm_eps: float = 1e-3,
        frozen_stages: int = 3,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_norm_kind(norm)
        layers = mobilenet_v3_large_layers(width_mult, norm, norm_eps)
        for module in nn.ModuleList(layers).modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.01  # torchvision's MobileNetV3 training setting
        self._setup(layers, out_levels, frozen_stages, weights)
