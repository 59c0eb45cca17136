"""Feature Pyramid Network (Lin et al., 2017) with torchvision's numerics.

For input levels ``c_i`` (shallowest first) the FPN computes laterals ``l_i = lateral_i(c_i)``
(1x1 conv), a top-down sum ``t_top = l_top``, ``t_i = l_i + nearest_upsample(t_{i+1}, size of l_i)``
(``F.interpolate(size=..., mode="nearest")`` as torchvision, so odd sizes work), and outputs
``p_i = output_i(t_i)`` (3x3 conv). Output names replace the leading ``c`` of the input name by
``p`` (``"c3"`` -> ``"p3"``).

Extra levels above the top one:

- ``"maxpool"``: ``p{top+1} = max_pool2d(p_top, kernel 1, stride 2)``, torchvision's
  ``LastLevelMaxPool`` (Faster R-CNN's P6).
- ``"p6p7"``: ``p6 = conv3x3/2(x)``, ``p7 = conv3x3/2(relu(p6))``, torchvision's ``LastLevelP6P7``
  (RetinaNet), where ``x`` is the top input ``c5`` or the top output ``p5`` (``p6p7_source``).
  torchvision's rule, ``use_P5 = in_channels == out_channels``, is ``p6p7_source="auto"`` when the
  top input has as many channels as the FPN (``"p5"`` then) and otherwise ``"c5"``; torchvision's
  ``retinanet_resnet50_fpn`` (``LastLevelP6P7(256, 256)``) is ``p6p7_source="p5"`` and
  ``retinanet_resnet50_fpn_v2`` (``LastLevelP6P7(2048, 256)``) is ``"c5"``.

Parameter layout, keyed by level name so that it reads and converts easily::

    lateral_convs.<input level>.0.weight / .0.bias   (.1.* is the norm when there is one)
    output_convs.<input level>.0.weight / .0.bias
    extra_convs.<extra level>.weight / .bias         ("p6p7" only)

:func:`fpn_state_dict_from_torchvision` maps ``torchvision.ops.FeaturePyramidNetwork`` keys
(``inner_blocks.i`` -> ``lateral_convs.<level i>``, ``layer_blocks.i`` -> ``output_convs.<level i>``,
``extra_blocks.p6``/``p7`` -> ``extra_convs.<first/second extra level>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from detkit.utils.deprecation import MovedAttribute, renamed_keyword
from detkit.models.layers import ConvNormAct, check_norm_kind
from detkit.models.sizing import SizedByInputs
from detkit.structures import ShapeSpec

EXTRA_LEVEL_KINDS = (None, "maxpool", "p6p7")


def _output_name(input_name: str) -> str:
    return "p" + input_name[1:] if input_name.startswith("c") else "p_" + input_name


class FPN(SizedByInputs, nn.Module):
    """Feature Pyramid Network.

    Args:
        in_shapes: Shapes of the input levels, e.g. ``backbone.output_shape()``; they are used
            shallowest (smallest stride) first. None: sized by its detector from the backbone's
            ``output_shape()`` (or by :meth:`bind_in_shapes`); given, the detector checks them
            against the backbone's.
        out_channels: Channels of every output level.
        in_levels: Optional subset of the input levels to use (default: all).
        extra_levels: None, ``"maxpool"`` or ``"p6p7"`` (see the module docstring).
        p6p7_source: ``"auto"``, ``"c5"`` or ``"p5"``: the input of the P6 conv of ``"p6p7"``.
        norm: Optional norm kind after the lateral and output convs (their convs then have no bias).
        input_shapes: Deprecated name of ``in_shapes``.

    Example:
        >>> fpn = FPN(ResNet(50).output_shape(), 256, extra_levels="maxpool")
        >>> list(fpn.output_shape())
        ['p2', 'p3', 'p4', 'p5', 'p6']
    """

    input_shapes = MovedAttribute("in_shapes")

    def __init__(
        self,
        in_shapes: Mapping[str, ShapeSpec] | None = None,
        out_channels: int = 256,
        *,
        in_levels: Sequence[str] | None = None,
        extra_levels: str | None = None,
        p6p7_source: str = "auto",
        norm: str | None = None,
        input_shapes: Mapping[str, ShapeSpec] | None = None,
    ) -> None:
        super().__init__()
        in_shapes = renamed_keyword("FPN", "input_shapes", input_shapes, "in_shapes", in_shapes, None)
        if extra_levels not in EXTRA_LEVEL_KINDS:
            raise ValueError(f"FPN: extra_levels must be one of {EXTRA_LEVEL_KINDS}, got {extra_levels!r}")
        if p6p7_source not in ("auto", "c5", "p5"):
            raise ValueError(f"FPN: p6p7_source must be 'auto', 'c5' or 'p5', got {p6p7_source!r}")
        check_norm_kind(norm, allow_none=True)
        self.out_channels = out_channels
        self.extra_levels = extra_levels
        self.p6p7_source = p6p7_source
        self.norm = norm
        self.requested_levels = None if in_levels is None else tuple(in_levels)
        self.in_levels: tuple[str, ...] = ()
        self.extra_names: tuple[str, ...] = ()
        self.p6p7_from_output = False
        self._out_shapes: dict[str, ShapeSpec] = {}
        self.lateral_convs = nn.ModuleDict()
        self.output_convs = nn.ModuleDict()
        self.extra_convs = nn.ModuleDict()
        self._init_in_shapes(in_shapes)

    def _select_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str) -> dict[str, ShapeSpec]:
        if self.requested_levels is not None:
            unknown = [name for name in self.requested_levels if name not in shapes]
            if unknown:
                raise ValueError(f"FPN: in_levels {unknown} not in the {source} levels {list(shapes)}")
            shapes = {name: shapes[name] for name in self.requested_levels}
        if not shapes:
            raise ValueError("FPN needs at least one input level")
        return dict(shapes)

    def _build(self, in_shapes: dict[str, ShapeSpec]) -> None:
        out_channels, norm = self.out_channels, self.norm
        # Stable sort: levels with equal strides keep their given order.
        self.in_levels = tuple(sorted(in_shapes, key=lambda name: in_shapes[name].stride))
        self.in_shapes = {name: in_shapes[name] for name in self.in_levels}
        for name in self.in_levels:
            channels = in_shapes[name].channels
            self.lateral_convs[name] = ConvNormAct(channels, out_channels, 1, norm=norm, activation=None)
            self.output_convs[name] = ConvNormAct(out_channels, out_channels, 3, norm=norm, activation=None)

        top = self.in_shapes[self.in_levels[-1]]
        self._out_shapes = {
            _output_name(name): ShapeSpec(out_channels, shape.stride) for name, shape in self.in_shapes.items()
        }
        num_extra = {None: 0, "maxpool": 1, "p6p7": 2}[self.extra_levels]
        top_level = int(math.log2(top.stride))
        self.extra_names = tuple(f"p{top_level + k}" for k in range(1, num_extra + 1))
        for k, name in enumerate(self.extra_names, start=1):
            self._out_shapes[name] = ShapeSpec(out_channels, top.stride * 2**k)

        if self.extra_levels == "p6p7":
            self.p6p7_from_output = self.p6p7_source == "p5" or (
                self.p6p7_source == "auto" and top.channels == out_channels
            )
            first_in = out_channels if self.p6p7_from_output else top.channels
            self.extra_convs[self.extra_names[0]] = nn.Conv2d(first_in, out_channels, 3, 2, 1)
            self.extra_convs[self.extra_names[1]] = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # kaiming_uniform with a=1 ("c2_xavier_fill"), as torchvision and detectron2.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and stride of each output level, shallowest first."""
        self._require_sized()
        return dict(self._out_shapes)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Builds the pyramid.

        Args:
            features: ``{input level: [B, C_level, h_level, w_level]}``; levels not in
                ``in_levels`` are ignored.

        Returns:
            ``{output level: [B, out_channels, h, w]}``, shallowest first; an input level keeps its
            size, each extra level halves the one below (rounding up).
        """
        self._require_sized()
        missing = [name for name in self.in_levels if name not in features]
        if missing:
            raise KeyError(f"FPN expects levels {list(self.in_levels)}; missing {missing}, got {list(features)}")
        for name in self.in_levels:
            expected = self.in_shapes[name].channels
            if features[name].dim() != 4 or features[name].shape[1] != expected:
                raise ValueError(
                    f"FPN level {name!r}: expected [B, {expected}, h, w], got {list(features[name].shape)}"
                )

        results: dict[str, Tensor] = {}
        top_down: Tensor | None = None
        for name in reversed(self.in_levels):
            lateral = self.lateral_convs[name](features[name])
            if top_down is not None:
                lateral = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            top_down = lateral
            results[_output_name(name)] = self.output_convs[name](top_down)
        outputs = dict(reversed(list(results.items())))

        top_output = outputs[_output_name(self.in_levels[-1])]
        if self.extra_levels == "maxpool":
            outputs[self.extra_names[0]] = F.max_pool2d(top_output, kernel_size=1, stride=2, padding=0)
        elif self.extra_levels == "p6p7":
            source = top_output if self.p6p7_from_output else features[self.in_levels[-1]]
            p6_name, p7_name = self.extra_names
            p6 = self.extra_convs[p6_name](source)
            outputs[p6_name] = p6
            outputs[p7_name] = self.extra_convs[p7_name](F.relu(p6))
        return outputs


def fpn_state_dict_from_torchvision(
    state_dict: Mapping[str, Tensor],
    in_levels: Sequence[str],
    extra_names: Sequence[str] = ("p6", "p7"),
    prefix: str = "",
) -> dict[str, Tensor]:
    """Renames ``torchvision.ops.FeaturePyramidNetwork`` keys to :class:`FPN`'s.

    Args:
        state_dict: torchvision FPN state dict (version 1 keys ``inner_blocks.i.weight`` and
            version 2 keys ``inner_blocks.i.0.weight`` both accepted).
        in_levels: detkit input level of each torchvision block index, shallowest first (usually
            ``fpn.in_levels``).
        extra_names: detkit names of torchvision's ``extra_blocks.p6`` and ``.p7`` (usually
            ``fpn.extra_names``).
        prefix: Prefix of the FPN keys in ``state_dict`` (e.g. ``"backbone.fpn."``); keys without
            it are dropped.

    Returns:
        A state dict for :meth:`FPN.load_state_dict`.
    """
    block_names = {"inner_blocks": "lateral_convs", "layer_blocks": "output_convs"}
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix) :].split(".")
        if parts[0] in block_names:
            index, rest = int(parts[1]), parts[2:]
            if len(rest) == 1:  # version 1: the conv was the block itself
                rest = ["0"] + rest
            converted[".".join([block_names[parts[0]], in_levels[index]] + rest)] = value
        elif parts[0] == "extra_blocks" and parts[1] in ("p6", "p7"):
            name = extra_names[0] if parts[1] == "p6" else extra_names[1]
            converted[".".join(["extra_convs", name] + parts[2:])] = value
        else:
            converted[".".join(parts)] = value
    return converted
