"""The PAN neck of YOLOv8 and YOLO11 (the ``head`` section of ultralytics' yaml before ``Detect``).

A top-down path then a bottom-up path, concatenating (upsampled map first, or the stride-2 conv's
output first, as the yamls' ``Concat`` order says)::

    t4 = block(cat(up2(c5), c4))             512      (yolov8.yaml layer 12, yolo11.yaml 13)
    p3 = block(cat(up2(t4), c3))             256      (15 / 16)
    p4 = block(cat(conv_s2(p3), t4))         512      (16-18 / 17-19)
    p5 = block(cat(conv_s2(p4), c5))         1024     (19-21 / 20-22)

(nominal widths before the scale). The blocks are C2f without shortcut (YOLOv8) or C3k2 (YOLO11:
C3k units only in the p5 block, or everywhere at the m / l / x scales), with the nominal depth 3
(YOLOv8) or 2 (YOLO11) scaled by the depth multiple. Upsampling is nearest, factor 2.

Outputs ``p3``, ``p4``, ``p5`` at strides 8, 16, 32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.yolov8 import YOLO_VARIANTS, csp_block
from detkit.models.backbones.yolov8_blocks import Conv, resolve_scale
from detkit.models.sizing import SizedByInputs
from detkit.structures import ShapeSpec

__all__ = ["YOLOv8PAN"]

_LEVELS = ("c3", "c4", "c5")


class YOLOv8PAN(SizedByInputs, nn.Module):
    """PAN neck of YOLOv8 / YOLO11 (see the module docstring).

    Args:
        in_shapes: the backbone's ``c3``, ``c4``, ``c5``; None: sized by its detector from the
            backbone's ``output_shape()``.
        variant: ``"yolov8"`` or ``"yolo11"`` (the blocks).
        scale: ``"n"`` .. ``"x"`` or ``(depth, width, max_channels)``, as the backbone's.

    Shapes: ``{c3, c4, c5}`` at strides 8 / 16 / 32 -> ``{p3, p4, p5}`` at the same sizes.
    """

    def __init__(
        self,
        in_shapes: Mapping[str, ShapeSpec] | None = None,
        variant: str = "yolov8",
        scale: str | Sequence[float] = "n",
    ) -> None:
        super().__init__()
        if variant not in YOLO_VARIANTS:
            raise ValueError(f"YOLOv8PAN: variant must be one of {YOLO_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.scale = resolve_scale(variant, scale)
        self.scale_name = scale if isinstance(scale, str) else None
        s = self.scale
        self.widths = {"t4": s.channels(512), "p3": s.channels(256), "p4": s.channels(512), "p5": s.channels(1024)}
        self._init_in_shapes(in_shapes)

    def _select_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str) -> dict[str, ShapeSpec]:
        missing = [name for name in _LEVELS if name not in shapes]
        if missing:
            raise ValueError(f"YOLOv8PAN needs levels {list(_LEVELS)} from its {source}, which lacks {missing}")
        return {name: shapes[name] for name in _LEVELS}

    def _build(self, in_shapes: dict[str, ShapeSpec]) -> None:
        self.in_shapes = dict(in_shapes)
        c3, c4, c5 = (in_shapes[name].channels for name in _LEVELS)
        w = self.widths
        repeats = 3 if self.variant == "yolov8" else 2

        def block(cin: int, cout: int, c3k: bool = False) -> nn.Module:
            return csp_block(self.variant, self.scale, self.scale_name, cin, cout, repeats, c3k=c3k)

        self.top_down_p4 = block(c5 + c4, w["t4"])
        self.top_down_p3 = block(w["t4"] + c3, w["p3"])
        self.down_p3 = Conv(w["p3"], w["p3"], 3, 2)
        self.bottom_up_p4 = block(w["p3"] + w["t4"], w["p4"])
        self.down_p4 = Conv(w["p4"], w["p4"], 3, 2)
        self.bottom_up_p5 = block(w["p4"] + c5, w["p5"], c3k=self.variant == "yolo11")

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``p3``, ``p4``, ``p5``: channels and strides (8, 16, 32)."""
        return {name: ShapeSpec(channels=self.widths[name], stride=stride)
                for name, stride in (("p3", 8), ("p4", 16), ("p5", 32))}  # fmt: skip

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{c3, c4, c5} -> {p3, p4, p5}`` (see the module docstring)."""
        self._require_sized()
        c3, c4, c5 = (features[name] for name in _LEVELS)
        t4 = self.top_down_p4(torch.cat((F.interpolate(c5, scale_factor=2.0, mode="nearest"), c4), 1))
        p3 = self.top_down_p3(torch.cat((F.interpolate(t4, scale_factor=2.0, mode="nearest"), c3), 1))
        p4 = self.bottom_up_p4(torch.cat((self.down_p3(p3), t4), 1))
        p5 = self.bottom_up_p5(torch.cat((self.down_p4(p4), c5), 1))
        return {"p3": p3, "p4": p4, "p5": p5}
