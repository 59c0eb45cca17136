"""SSDLite's MobileNetV3-Large (Howard et al. 2019, sec. 6.3): torchvision's ``ssdlite320`` body.

The MobileNetV3-Large of :mod:`detkit.models.backbones.mobilenet` tapped at the "C4 expansion"
(the 1x1 expansion conv of the first stride-32 block, stride 16) and at the last 1x1 conv
(stride 32), followed by four SSDLite extra blocks (MobileNetV2 paper, sec. 6.2: 1x1 conv to half
the output channels, 3x3 depthwise conv of stride 2, 1x1 conv; BatchNorm and ReLU6 after each).

"Reduced tail" (MobileNetV3 paper, sec. 6.3): the last stage (the three stride-32 blocks and the
last conv) has half the channels: 80 instead of 160 (expansions 480 instead of 960, last conv 480
instead of 960). torchvision's ``ssdlite320_mobilenet_v3_large`` uses it whenever it is not
given ImageNet backbone weights, which includes its COCO checkpoint; so does this default.

Levels (map sizes for a 320x320 input):

==============  =======================================  ===========================  =======
level           layer                                    channels (reduced tail)      size
==============  =======================================  ===========================  =======
``c4_expand``   expansion conv of the first s32 block    672                          20x20
``c5``          last 1x1 conv                            480 (960 without)            10x10
``c6``..``c9``  extra blocks                             512, 256, 256, 128           5, 3, 2, 1
==============  =======================================  ===========================  =======

Normalisation: torchvision builds SSDLite with trainable ``BatchNorm2d(eps=1e-3, momentum=0.03)``
everywhere (backbone, extras and head), and so does this default. Parameter names: ``features.*``
as :class:`~detkit.models.backbones.mobilenet.MobileNetV3` (torchvision's ``mobilenet_v3_large``
layout), ``extra.<i>.<j>.*`` as torchvision's SSDLite extras.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from detkit.models.backbones.base import ShapeSpec
from detkit.models.backbones.mobilenet import _MobileNet, mobilenet_v3_large_layers
from detkit.models.layers import ConvNormAct, check_norm_kind

# Output channels of the four extra blocks (torchvision: get_depth(512), 256, 256, 128).
SSDLITE_EXTRA_CHANNELS = (512, 256, 256, 128)
# torchvision's ssdlite320 BatchNorm settings.
SSDLITE_NORM_EPS = 1e-3
SSDLITE_NORM_MOMENTUM = 0.03


def _channels(value: int, width_mult: float, min_depth: int) -> int:
    """torchvision's ``get_depth`` for the extra blocks: ``max(min_depth, int(value * width_mult))``."""
    return max(min_depth, int(value * width_mult))


def ssdlite_extra_block(in_channels: int, out_channels: int, norm: str, norm_eps: float) -> nn.Sequential:
    """1x1 conv to ``out_channels // 2``, depthwise 3x3 stride 2, 1x1 conv; norm and ReLU6 after each.

    Args:
        in_channels: channels of the input ``[B, in_channels, H, W]``.
        out_channels: channels of the output ``[B, out_channels, ceil(H / 2), ceil(W / 2)]``.
        norm: norm kind (``"bn"`` as torchvision).
        norm_eps: norm ``eps``.
    """
    mid = out_channels // 2
    return nn.Sequential(
        ConvNormAct(in_channels, mid, 1, norm=norm, norm_eps=norm_eps, activation=nn.ReLU6),
        ConvNormAct(mid, mid, 3, 2, groups=mid, norm=norm, norm_eps=norm_eps, activation=nn.ReLU6),
        ConvNormAct(mid, out_channels, 1, norm=norm, norm_eps=norm_eps, activation=nn.ReLU6),
    )


class SSDLiteMobileNetV3(_MobileNet):
    """MobileNetV3-Large with SSDLite's taps and extra blocks (see the module docstring).

    Args:
        width_mult: channel multiplier of the MobileNet blocks and of the extras.
        reduced_tail: halve the channels of the last stage (torchvision's SSDLite default).
        norm: norm kind of every layer (``"bn"``: trainable BatchNorm, as torchvision).
        norm_eps: norm ``eps`` (1e-3, torchvision's SSDLite).
        norm_momentum: BatchNorm running-statistics momentum (0.03, torchvision's SSDLite).
        min_depth: smallest channel count of an extra block.
        frozen_stages: MobileNet stages to freeze, as :class:`MobileNetV3` (torchvision's SSDLite
            default trains everything: 0).
        weights: local MobileNetV3-Large checkpoint in torchvision's key format, or None. ImageNet
            weights only fit with ``reduced_tail=False``.
    """

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        reduced_tail: bool = True,
        norm: str = "bn",
        norm_eps: float = SSDLITE_NORM_EPS,
        norm_momentum: float = SSDLITE_NORM_MOMENTUM,
        min_depth: int = 16,
        frozen_stages: int = 0,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_norm_kind(norm)
        layers = mobilenet_v3_large_layers(width_mult, norm, norm_eps, reduced_tail=reduced_tail)
        self._setup(layers, ("c4_expand", "c5"), frozen_stages, weights)

        extra: list[nn.Module] = []
        shapes = dict(self._out_shapes)
        in_channels = layers[-1][0].out_channels  # the last 1x1 conv's output: c5
        for index, channels in enumerate(SSDLITE_EXTRA_CHANNELS):
            out_channels = _channels(channels, width_mult, min_depth)
            extra.append(ssdlite_extra_block(in_channels, out_channels, norm, norm_eps))
            shapes[f"c{index + 6}"] = ShapeSpec(out_channels, 2 ** (index + 6))
            in_channels = out_channels
        self.extra = nn.ModuleList(extra)
        for module in self.extra.modules():
            if isinstance(module, nn.Conv2d):
                # torchvision's SSDLite initialisation of its added layers (_normal_init).
                nn.init.normal_(module.weight, mean=0.0, std=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = norm_momentum
        self.out_levels = tuple(shapes)
        self._out_shapes = shapes

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        x = images
        features: dict[str, Tensor] = {}
        for index, layer in enumerate(self.features):
            if index == self._expand_tap_layer:
                x, features["c4_expand"] = layer.forward_with_expansion(x)
            else:
                x = layer(x)
        features["c5"] = x
        for level, block in zip(self.out_levels[2:], self.extra):
            x = block(x)
            features[level] = x
        return features
