"""The backbone of YOLOv8 and YOLO11 (ultralytics' yolov8.yaml / yolo11.yaml, layers 0-9 / 0-10).

Both variants are one stack of stride-2 3x3 :class:`~detkit.models.backbones.yolov8_blocks.Conv`
layers, each followed by a CSP block, with an SPPF (and, in YOLO11, a C2PSA) at the end; the
variant picks the blocks and their arguments. Nominal widths (before the scale's width multiple
and channel cap, :class:`~detkit.models.backbones.yolov8_blocks.YOLOScale`)::

    stage   layers (yaml index)                              YOLOv8               YOLO11
    stem    Conv 64 s2 (0)
    stage2  Conv 128 s2 (1), block (2)                       C2f 128 x3 shortcut  C3k2 256 x2 e=0.25
    stage3  Conv 256 s2 (3), block (4)            -> c3      C2f 256 x6 shortcut  C3k2 512 x2 e=0.25
    stage4  Conv 512 s2 (5), block (6)            -> c4      C2f 512 x6 shortcut  C3k2 512 x2 c3k
    stage5  Conv 1024 s2 (7), block (8), SPPF (9) -> c5      C2f 1024 x3 shortcut C3k2 1024 x2 c3k,
                                                                                  + C2PSA x2 (10)

At the m, l and x scales every YOLO11 C3k2 uses C3k units (ultralytics' ``parse_model``).
Levels ``c3``, ``c4``, ``c5`` at strides 8, 16, 32.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from detkit.models.backbones.base import Backbone, select_levels
from detkit.models.backbones.yolov8_blocks import SPPF, C2f, C2PSA, C3k2, Conv, YOLOScale, resolve_scale
from detkit.structures import ShapeSpec

__all__ = ["YOLO_VARIANTS", "YOLOv8Backbone", "csp_block"]

YOLO_VARIANTS = ("yolov8", "yolo11")


def csp_block(
    variant: str, scale: YOLOScale, scale_name: str | None, in_channels: int, out_channels: int, repeats: int,
    *, shortcut: bool = False, c3k: bool = False, expansion: float = 0.5,
) -> nn.Module:  # fmt: skip
    """The CSP block of ``variant`` with ``repeats`` nominal units (scaled by the depth multiple).

    YOLOv8: :class:`C2f` (``shortcut`` as given). YOLO11: :class:`C3k2` (always residual), with C3k
    units when ``c3k`` or at the m / l / x scales.
    """
    count = scale.repeats(repeats)
    if variant == "yolov8":
        return C2f(in_channels, out_channels, count, shortcut=shortcut, expansion=expansion)
    return C3k2(in_channels, out_channels, count, c3k=c3k or scale_name in ("m", "l", "x"), expansion=expansion)


class YOLOv8Backbone(Backbone):
    """YOLOv8 / YOLO11 backbone (see the module docstring).

    Args:
        variant: ``"yolov8"`` or ``"yolo11"``.
        scale: ``"n"``, ``"s"``, ``"m"``, ``"l"``, ``"x"`` or ``(depth, width, max_channels)``.
        out_levels: levels returned, among ``c3``, ``c4``, ``c5``.
        in_channels: image channels.

    Shapes: ``[B, 3, H, W]`` (H, W multiples of 32) -> ``{cK: [B, C_K, H / 2**K, W / 2**K]}``.
    """

    def __init__(
        self,
        variant: str = "yolov8",
        scale: str | Sequence[float] = "n",
        out_levels: Sequence[str] = ("c3", "c4", "c5"),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if variant not in YOLO_VARIANTS:
            raise ValueError(f"YOLOv8Backbone: variant must be one of {YOLO_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.scale = resolve_scale(variant, scale)
        self.in_channels = in_channels
        s = self.scale
        name = scale if isinstance(scale, str) else None
        w = [s.channels(c) for c in (64, 128, 256, 512, 1024)]
        v8 = variant == "yolov8"

        def block(cin: int, cout: int, repeats: int, **kwargs: object) -> nn.Module:
            return csp_block(variant, s, name, cin, cout, repeats, **kwargs)  # type: ignore[arg-type]

        self.stem = Conv(in_channels, w[0], 3, 2)
        if v8:
            self.stage2 = nn.Sequential(Conv(w[0], w[1], 3, 2), block(w[1], w[1], 3, shortcut=True))
            self.stage3 = nn.Sequential(Conv(w[1], w[2], 3, 2), block(w[2], w[2], 6, shortcut=True))
            self.stage4 = nn.Sequential(Conv(w[2], w[3], 3, 2), block(w[3], w[3], 6, shortcut=True))
            self.stage5 = nn.Sequential(Conv(w[3], w[4], 3, 2), block(w[4], w[4], 3, shortcut=True), SPPF(w[4], w[4]))
            widths = (w[2], w[3], w[4])
        else:
            c2, c3 = s.channels(256), s.channels(512)
            self.stage2 = nn.Sequential(Conv(w[0], w[1], 3, 2), block(w[1], c2, 2, expansion=0.25))
            self.stage3 = nn.Sequential(Conv(c2, w[2], 3, 2), block(w[2], c3, 2, expansion=0.25))
            self.stage4 = nn.Sequential(Conv(c3, w[3], 3, 2), block(w[3], w[3], 2, c3k=True))
            self.stage5 = nn.Sequential(
                Conv(w[3], w[4], 3, 2), block(w[4], w[4], 2, c3k=True), SPPF(w[4], w[4]),
                C2PSA(w[4], s.repeats(2)),
            )  # fmt: skip
            widths = (c3, w[3], w[4])
        available = {f"c{k}": ShapeSpec(channels=c, stride=2**k) for k, c in zip((3, 4, 5), widths)}
        levels = select_levels(out_levels, available, "YOLOv8Backbone")
        stages = [[self.stem], [self.stage2], [self.stage3], [self.stage4], [self.stage5]]
        self._finish_init({k: available[k] for k in levels}, stages, 0, None)

    def _forward_features(self, images: Tensor) -> dict[str, Tensor]:
        c3 = self.stage3(self.stage2(self.stem(images)))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        features = {"c3": c3, "c4": c4, "c5": c5}
        return {name: features[name] for name in self.out_levels}
