"""SSD's VGG16 (Liu et al. 2016, fig. 2 and sec. 3): VGG16 up to conv5_3 with SSD's changes.

The changes to VGG16 (torchvision's ``SSDFeatureExtractorVGG`` and the paper's Caffe model):

* pool3 rounds up (``ceil_mode``), so a 300x300 input gives 38x38 conv4_3 maps (``VGG``'s
  ``ceil_mode_stages=(3,)``);
* conv4_3 is L2-normalised over channels and multiplied by a learnt per-channel scale,
  initialised to 20 (ParseNet, Liu et al. 2015; SSD sec. 3.1 "PASCAL VOC2007");
* pool5 becomes a 3x3 max pool of stride 1 (padding 1), fc6 a 3x3 conv with dilation 6
  ("atrous", 1024 channels) and fc7 a 1x1 conv (1024 channels);
* extra layers, each a 1x1 conv halving the channels then a 3x3 (or 4x4) conv, ReLU after each.

Levels (``"cK"``: nominal stride ``2**K``; actual map sizes for 300 / 512 inputs):

========  ==========================  ========  ===========  ===========
level     layer                       channels  SSD300       SSD512
========  ==========================  ========  ===========  ===========
``c3``    conv4_3, L2-normalised      512       38x38        64x64
``c4``    fc7                         1024      19x19        32x32
``c5``    conv8_2                     512       10x10        16x16
``c6``    conv9_2                     256       5x5          8x8
``c7``    conv10_2                    256       3x3          4x4
``c8``    conv11_2                    256       1x1          2x2
``c9``    conv12_2 (SSD512 only)      256       --           1x1
========  ==========================  ========  ===========  ===========

SSD300's conv10_2 and conv11_2 are unpadded 3x3 convs (5 -> 3 -> 1), as torchvision and the
paper. SSD512 follows the paper's Caffe model (``ssd_pascal_512``): conv8_2 .. conv11_2 are 3x3
stride-2 convs with padding 1 and conv12_2 a 4x4 conv with padding 1 (64, 32, ..., 2, 1), matching
the default-box steps 8 .. 512. (torchvision's ``highres=True`` extractor, which no torchvision
model uses, keeps stride-1 conv10_2/conv11_2 and would give 6x6 and 4x4 maps instead.)

Parameter names: ``vgg.features.*`` is torchvision's ``vgg16().features`` (so ImageNet VGG16
weights load into ``vgg``), ``fc6``/``fc7``, ``extra.<i>.{0,2}`` (1x1 and 3x3 convs) and
``l2_scale``. :mod:`detkit.models.convert.torchvision_ssd` maps torchvision's names onto these.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.base import Backbone, ShapeSpec
from detkit.models.backbones.vgg import VGG

# Extra layers: (1x1 conv channels, output channels, kernel, stride, padding) of conv8_2 onwards.
SSD300_EXTRA_LAYERS = (
    (256, 512, 3, 2, 1),  # conv8_2: 19 -> 10
    (128, 256, 3, 2, 1),  # conv9_2: 10 -> 5
    (128, 256, 3, 1, 0),  # conv10_2: 5 -> 3
    (128, 256, 3, 1, 0),  # conv11_2: 3 -> 1
)
SSD512_EXTRA_LAYERS = (
    (256, 512, 3, 2, 1),  # conv8_2: 32 -> 16
    (128, 256, 3, 2, 1),  # conv9_2: 16 -> 8
    (128, 256, 3, 2, 1),  # conv10_2: 8 -> 4
    (128, 256, 3, 2, 1),  # conv11_2: 4 -> 2
    (128, 256, 4, 1, 1),  # conv12_2: 2 -> 1
)
EXTRA_LAYERS = {300: SSD300_EXTRA_LAYERS, 512: SSD512_EXTRA_LAYERS}

# ParseNet's initial value of the conv4_3 scale (the SSD paper's Caffe models use 20 too).
L2_NORM_SCALE_INIT = 20.0
FC_CHANNELS = 1024


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform conv weights and zero biases, SSD's initialisation of its added layers."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class SSDVGG(Backbone):
    """VGG16 with SSD's changes and extra layers (see the module docstring).

    Args:
        input_size: 300 (SSD300 extra layers) or 512 (SSD512).
        frozen_stages: VGG stages (1..5) to freeze; torchvision's ``trainable_backbone_layers=t``
            is ``frozen_stages = 5 - t`` (its default with pretrained weights, 4, freezes stage 1).
        weights: Local ImageNet VGG16 checkpoint in torchvision's key format (``features.*``), or None.
    """

    def __init__(
        self,
        input_size: int = 300,
        *,
        frozen_stages: int = 0,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if input_size not in EXTRA_LAYERS:
            raise ValueError(f"SSDVGG has extra layers for input_size 300 and 512, got {input_size}")
        self.input_size = input_size
        # conv1_1 .. conv5_3 (+ ReLU); VGG stops after conv5_3 since "c4" is its deepest level.
        self.vgg = VGG(16, out_levels=("c3", "c4"), ceil_mode_stages=(3,), frozen_stages=frozen_stages, weights=weights)
        self.l2_scale = nn.Parameter(torch.full((512,), L2_NORM_SCALE_INIT))
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        # fc6 as an atrous conv: dilation 6, padding 6 keeps the 19x19 (SSD300) size.
        self.fc6 = nn.Conv2d(512, FC_CHANNELS, kernel_size=3, padding=6, dilation=6)
        self.fc7 = nn.Conv2d(FC_CHANNELS, FC_CHANNELS, kernel_size=1)
        extra: list[nn.Module] = []
        shapes = {"c3": ShapeSpec(512, 8), "c4": ShapeSpec(FC_CHANNELS, 16)}
        in_channels = FC_CHANNELS
        for index, (mid, out, kernel, stride, padding) in enumerate(EXTRA_LAYERS[input_size]):
            extra.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, mid, kernel_size=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, out, kernel_size=kernel, stride=stride, padding=padding),
                    nn.ReLU(inplace=True),
                )
            )
            shapes[f"c{index + 5}"] = ShapeSpec(out, 2 ** (index + 5))
            in_channels = out
        self.extra = nn.ModuleList(extra)
        xavier_init(nn.ModuleList([self.fc6, self.fc7, self.extra]))
        # Freezing and weights are the inner VGG's business; nothing else to freeze or load here.
        self._finish_init(shapes, [], 0, None)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        vgg_features = self.vgg(images)
        conv4_3 = vgg_features["c3"]
        # F.normalize: x / max(||x||_2 over channels, 1e-12), as torchvision.
        features = {"c3": self.l2_scale.view(1, -1, 1, 1) * F.normalize(conv4_3)}
        x = F.relu(self.fc7(F.relu(self.fc6(self.pool5(vgg_features["c4"])), inplace=True)), inplace=True)
        features["c4"] = x
        for level, block in zip(self.out_levels[2:], self.extra):
            x = block(x)
            features[level] = x
        return features
