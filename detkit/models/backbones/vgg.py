"""VGG backbones (11/13/16/19, with or without batch norm), torchvision's ``features`` layout.

The conv stack is an ``nn.Sequential`` named ``features`` laid out exactly as torchvision's
``vgg*().features`` (conv, [norm,] ReLU, ..., max pool), so its keys are ``features.N.weight`` and a
torchvision checkpoint loads without remapping (``classifier.*`` is reported as unexpected).

Stages and levels: stage ``k`` (1..5) is a run of 3x3 convs at stride ``2**(k-1)`` followed by a
2x2 max pool. Level ``"c{k-1}"`` is the output of stage ``k``'s last ReLU, before its pool, so each
level is the last map at its stride, as for ResNet: ``"c3"`` is conv4_3 (stride 8, what SSD taps)
and ``"c4"`` is conv5_3 (stride 16, the classic Faster R-CNN VGG16 feature). ``"c5"`` is the output
of pool5 (stride 32). Layers after the deepest requested level are not built, so SSD can request
``"c4"`` and append its own pool5 and fc6/fc7 convs.

``ceil_mode_stages`` picks the stages whose pool rounds up (SSD300 uses ``(3,)``: pool3 with
``ceil_mode=True`` gives 38x38 conv4_3 maps for 300x300 inputs); strides stay nominal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from detkit.models.backbones.base import Backbone, ShapeSpec, select_levels
from detkit.models.layers import check_norm_kind, make_norm

# depth -> output channels of the 3x3 convs of each of the 5 stages
VGG_STAGE_CHANNELS: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}
_LEVELS = ("c0", "c1", "c2", "c3", "c4", "c5")


class VGG(Backbone):
    """VGG backbone returning stage outputs as levels ``"c1"`` .. ``"c5"``.

    Args:
        depth: 11, 13, 16 or 19.
        out_levels: Levels among ``"c1"`` (conv2_x, stride 2), ``"c2"`` (conv3_x, 4),
            ``"c3"`` (conv4_x, 8), ``"c4"`` (conv5_x, 16), ``"c5"`` (pool5, 32).
        norm: None (plain VGG) or a norm kind after each conv (``"bn"`` matches torchvision's
            ``vgg*_bn`` layout, whose convs keep their bias).
        ceil_mode_stages: Stages (1..5) whose max pool uses ``ceil_mode=True``.
        frozen_stages: 0 freezes nothing, ``k`` freezes the convs (and pools) of stages 1..k.
        weights: Local checkpoint in torchvision's vgg key format, or None.
    """

    def __init__(
        self,
        depth: int = 16,
        *,
        out_levels: Sequence[str] = ("c3", "c4", "c5"),
        norm: str | None = None,
        ceil_mode_stages: Sequence[int] = (),
        frozen_stages: int = 0,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if depth not in VGG_STAGE_CHANNELS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_STAGE_CHANNELS)}, got {depth}")
        check_norm_kind(norm, allow_none=True)
        bad_stages = [stage for stage in ceil_mode_stages if stage not in range(1, 6)]
        if bad_stages:
            raise ValueError(f"ceil_mode_stages must be in 1..5, got {bad_stages}")
        self.depth = depth

        available = {f"c{k}": ShapeSpec(VGG_STAGE_CHANNELS[depth][k][-1], 2**k) for k in range(1, 5)}
        available["c5"] = ShapeSpec(512, 32)
        levels = select_levels(out_levels, available, f"VGG-{depth}")
        deepest = _LEVELS.index(levels[-1])

        layers: list[nn.Module] = []
        self._level_at_layer: dict[int, str] = {}  # index in features -> level it produces
        stages: list[list[nn.Module]] = []
        in_channels = 3
        for stage_index, stage_channels in enumerate(VGG_STAGE_CHANNELS[depth]):
            stage: list[nn.Module] = []
            for out_channels in stage_channels:
                # torchvision's vgg*_bn keep the conv bias before the norm; so do we, for its keys.
                stage.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
                if norm is not None:
                    stage.append(make_norm(norm, out_channels))
                stage.append(nn.ReLU(inplace=True))
                in_channels = out_channels
            self._level_at_layer[len(layers) + len(stage) - 1] = _LEVELS[stage_index]
            if stage_index == deepest:  # the deepest level is this stage's last ReLU
                layers += stage
                stages.append(stage)
                break
            stage.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=stage_index + 1 in ceil_mode_stages))
            layers += stage
            stages.append(stage)
            if stage_index == 4:  # pool5 output
                self._level_at_layer[len(layers) - 1] = "c5"
        self.features = nn.Sequential(*layers)
        self._init_weights()
        stages += [[] for _ in range(5 - len(stages))]
        self._finish_init({level: available[level] for level in levels}, stages, frozen_stages, weights)

    def _init_weights(self) -> None:
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        features: dict[str, Tensor] = {}
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            level = self._level_at_layer.get(index)
            if level in self._out_shapes:
                features[level] = x
        return features
