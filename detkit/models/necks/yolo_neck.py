"""YOLOv3's top-down neck: upsample the deeper level, concatenate with the backbone map, convolve.

Going from the deepest level to the shallowest, level ``i`` computes::

    x_i = c_i                                           (deepest level)
    x_i = concat([upsample2(lateral_i(p_{i+1})), c_i])  (other levels; darknet's
                                                         "[route] layers=-1, N": the upsampled
                                                         map first, then backbone layer N)
    p_i = block_i(x_i)

where ``lateral_i`` is a 1x1 conv to ``channels[i]`` and ``block_i`` alternates 1x1 convs to
``channels[i]`` and 3x3 convs to ``2 * channels[i]``, ``depths[i]`` of them, starting and ending
with a 1x1 (an empty block is the identity). In ``yolov3.cfg`` every level has a 5-conv block
(channels 128/256/512); ``yolov3-tiny.cfg`` has one 1x1 conv at ``p5`` (256 channels) and no
block at ``p4``, whose output is the 384-channel concatenation itself. The head's branch starts
where darknet's ``[route] layers=-4`` after each ``[yolo]`` points: the output of the block.

Outputs ``p3``, ``p4``, ``p5`` (level ``pK`` at the stride of the backbone's ``cK``), ordered
shallowest first like the backbone's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.darknet import ConvPair, conv_pair, darknet_conv
from detkit.models.sizing import SizedByInputs
from detkit.structures import ShapeSpec


class YOLOv3Neck(SizedByInputs, nn.Module):
    """The top-down path of YOLOv3 and YOLOv3-tiny.

    Args:
        in_shapes: Backbone levels it reads (e.g. ``c3``, ``c4``, ``c5``), shallowest first; None:
            sized by its detector from the backbone's ``output_shape()`` (every level it returns).
        channels: ``channels[i]`` of level ``i`` (shallowest first): the width of the lateral conv
            and of the block's 1x1 convs.
        depths: Number of convs in each level's block (0 or odd), shallowest first.
        norm: Norm kind of the convs.

    Shapes: ``{cK: [B, C_K, H/2**K, W/2**K]} -> {pK: [B, C'_K, H/2**K, W/2**K]}`` with
    ``C'_K = channels`` when the block is not empty, else lateral + backbone channels.
    """

    def __init__(
        self,
        in_shapes: Mapping[str, ShapeSpec] | None = None,
        channels: Sequence[int] = (128, 256, 512),
        depths: Sequence[int] = (5, 5, 5),
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if len(channels) != len(depths):
            raise ValueError(f"YOLOv3Neck: {len(channels)} channels and {len(depths)} depths must be as many")
        if any(d < 0 or (d and d % 2 == 0) for d in depths):
            raise ValueError(f"YOLOv3Neck: depths must be 0 or odd (1x1 first and last), got {list(depths)}")
        self.channels = tuple(int(c) for c in channels)
        self.depths = tuple(int(d) for d in depths)
        self.norm = norm
        self.in_levels: tuple[str, ...] = ()
        self.out_levels: tuple[str, ...] = ()
        self._out_shapes: dict[str, ShapeSpec] = {}
        # Stored deepest first, the order of computation and of darknet's cfg.
        self.laterals = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self._init_in_shapes(in_shapes)

    def _build(self, in_shapes: dict[str, ShapeSpec]) -> None:
        names, channels, depths, norm = list(in_shapes), self.channels, self.depths, self.norm
        if len(names) != len(channels):
            raise ValueError(
                f"YOLOv3Neck: {len(names)} input levels {names}, {len(channels)} channels and "
                f"{len(depths)} depths must be as many"
            )
        strides = [in_shapes[name].stride for name in names]
        if any(deep != 2 * shallow for shallow, deep in zip(strides, strides[1:])):
            raise ValueError(f"YOLOv3Neck: input strides must double from level to level, got {strides}")
        self.in_shapes = dict(in_shapes)
        self.in_levels = tuple(names)
        self.out_levels = tuple("p" + name.lstrip("c") for name in names)
        shapes: dict[str, ShapeSpec] = {}
        previous = 0
        for index in reversed(range(len(names))):  # deepest first
            width, depth, spec = channels[index], depths[index], in_shapes[names[index]]
            deepest = index == len(names) - 1
            self.laterals.append(nn.Identity() if deepest else darknet_conv(previous, width, 1, norm=norm))
            in_channels = spec.channels + (0 if deepest else width)
            convs = []
            for k in range(depth):
                out = width if k % 2 == 0 else 2 * width
                convs.append(darknet_conv(in_channels, out, 1 if k % 2 == 0 else 3, norm=norm))
                in_channels = out
            self.blocks.append(nn.Sequential(*convs))
            previous = in_channels
            shapes[self.out_levels[index]] = ShapeSpec(in_channels, spec.stride)
        self._out_shapes = {name: shapes[name] for name in self.out_levels}

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and stride of ``p3``.. (shallowest first)."""
        self._require_sized()
        return dict(self._out_shapes)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Runs the top-down path.

        Args:
            features: Backbone maps ``{cK: [B, C_K, h_K, w_K]}`` with ``h_K = 2 * h_{K+1}``.

        Returns:
            ``{pK: [B, C'_K, h_K, w_K]}``, shallowest first.
        """
        self._require_sized()
        outputs: dict[str, Tensor] = {}
        previous: Tensor | None = None
        for step, name in enumerate(reversed(self.in_levels)):
            x = features[name]
            if previous is not None:
                # darknet's [upsample] stride=2 is nearest-neighbour; [route] -1, N concatenates.
                up = F.interpolate(self.laterals[step](previous), scale_factor=2.0, mode="nearest")
                x = torch.cat([up, x], dim=1)
            previous = self.blocks[step](x)
            outputs["p" + name.lstrip("c")] = previous
        return {name: outputs[name] for name in self.out_levels}

    def darknet_convs_per_level(self) -> list[list[ConvPair]]:
        """Per level, deepest first: the lateral conv (if any) then the block's convs, cfg order."""
        levels = []
        for lateral, block in zip(self.laterals, self.blocks):
            pairs = [] if isinstance(lateral, nn.Identity) else [conv_pair(lateral)]
            levels.append(pairs + [conv_pair(unit) for unit in block])
        return levels
