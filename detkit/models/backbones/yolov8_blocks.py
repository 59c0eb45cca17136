"""The building blocks of YOLOv8 and YOLO11 (ultralytics' ``nn/modules``), and their scaling.

Every block keeps the attribute names of ultralytics' modules (``conv``/``bn``, ``cv1``, ``cv2``,
``m``...), so that an ultralytics state dict maps onto detkit's by a prefix per layer
(:mod:`detkit.models.convert.ultralytics`); the code is detkit's own.

- :class:`Conv`: conv (no bias, "same" padding ``k // 2``) + batch norm (eps 1e-3, momentum
  0.03: ultralytics' ``initialize_weights``) + SiLU (or no activation).
- :class:`Bottleneck`: two convs, residual when asked and the widths agree.
- :class:`C2f` (YOLOv8): a 1x1 conv split into two halves; bottlenecks chained on the second half,
  every intermediate output concatenated, then a 1x1 conv.
- :class:`C3k` and :class:`C3k2` (YOLO11): C3k is a CSP block (two 1x1 branches, bottlenecks on
  one); C3k2 is C2f whose inner units are C3k blocks (``c3k=True``) or bottlenecks.
- :class:`SPPF`: three chained 5x5 max-pools (SPP's 5/9/13 in one chain).
- :class:`Attention`, :class:`PSABlock`, :class:`C2PSA` (YOLO11's last backbone stage):
  multi-head self-attention on the flattened map with a depthwise positional conv, a conv FFN.

Scaling (:class:`YOLOScale`): each ultralytics yaml gives per scale ``[depth, width, max_channels]``;
a layer of ``c`` channels gets ``ceil(min(c, max_channels) * width / 8) * 8`` and a stack of
``n > 1`` units ``max(round(n * depth), 1)`` (:data:`YOLO_SCALES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "YOLO_SCALES",
    "Attention",
    "Bottleneck",
    "C2PSA",
    "C2f",
    "C3k",
    "C3k2",
    "Conv",
    "PSABlock",
    "SPPF",
    "YOLOScale",
    "resolve_scale",
]

BN_EPS = 1e-3  # ultralytics' initialize_weights sets every BatchNorm2d to eps 1e-3, momentum 0.03
BN_MOMENTUM = 0.03


class YOLOScale(NamedTuple):
    """Compound scaling of a YOLOv8 / YOLO11 model (one ``scales`` row of its yaml).

    Attributes:
        depth: multiplies the number of repeated units of a stack (``n > 1``).
        width: multiplies every layer's channels.
        max_channels: channels are capped at this before the width multiple.
    """

    depth: float
    width: float
    max_channels: int

    def channels(self, channels: int) -> int:
        """``ceil(min(channels, max_channels) * width / 8) * 8`` (ultralytics' ``make_divisible``)."""
        return int(math.ceil(min(channels, self.max_channels) * self.width / 8) * 8)

    def repeats(self, count: int) -> int:
        """``max(round(count * depth), 1)`` for ``count > 1``, else ``count``."""
        return max(round(count * self.depth), 1) if count > 1 else count


# The scales of ultralytics' cfg/models/v8/yolov8.yaml and cfg/models/11/yolo11.yaml.
YOLO_SCALES: dict[str, dict[str, YOLOScale]] = {
    "yolov8": {
        "n": YOLOScale(0.33, 0.25, 1024), "s": YOLOScale(0.33, 0.50, 1024), "m": YOLOScale(0.67, 0.75, 768),
        "l": YOLOScale(1.00, 1.00, 512), "x": YOLOScale(1.00, 1.25, 512),
    },
    "yolo11": {
        "n": YOLOScale(0.50, 0.25, 1024), "s": YOLOScale(0.50, 0.50, 1024), "m": YOLOScale(0.50, 1.00, 512),
        "l": YOLOScale(1.00, 1.00, 512), "x": YOLOScale(1.00, 1.50, 512),
    },
}  # fmt: skip


def resolve_scale(variant: str, scale: str | Sequence[float]) -> YOLOScale:
    """The :class:`YOLOScale` of ``scale`` (a letter of :data:`YOLO_SCALES`, or ``(depth, width,
    max_channels)``) for ``variant`` (``"yolov8"`` or ``"yolo11"``).

    Raises:
        ValueError: an unknown variant or scale letter, or a tuple that is not three numbers.
    """
    if variant not in YOLO_SCALES:
        raise ValueError(f"variant must be one of {sorted(YOLO_SCALES)}, got {variant!r}")
    if isinstance(scale, str):
        if scale not in YOLO_SCALES[variant]:
            raise ValueError(f"{variant}: scale must be one of {sorted(YOLO_SCALES[variant])}, got {scale!r}")
        return YOLO_SCALES[variant][scale]
    if len(scale) != 3:
        raise ValueError(f"{variant}: scale must be a letter or (depth, width, max_channels), got {scale!r}")
    return YOLOScale(float(scale[0]), float(scale[1]), int(scale[2]))


class Conv(nn.Module):
    """``act(bn(conv(x)))``: a bias-free conv with padding ``k // 2``, batch norm, SiLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel (odd).
        stride: stride.
        groups: conv groups (depthwise: ``in_channels``).
        act: SiLU after the norm (False: none).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
        act: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W] -> [B, out, H / stride, W / stride]``."""
        return self.act(self.bn(self.conv(x)))


def depthwise_conv(in_channels: int, out_channels: int, kernel_size: int) -> Conv:
    """ultralytics' ``DWConv``: a :class:`Conv` with ``gcd(in, out)`` groups."""
    return Conv(in_channels, out_channels, kernel_size, groups=math.gcd(in_channels, out_channels))


class Bottleneck(nn.Module):
    """``x + cv2(cv1(x))`` (the residual only with ``shortcut`` and equal widths).

    Args:
        in_channels, out_channels: widths.
        shortcut: add the input when the widths agree.
        kernel_sizes: kernels of ``cv1`` and ``cv2``.
        expansion: hidden width ``int(out_channels * expansion)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, shortcut: bool = True, kernel_sizes: tuple[int, int] = (3, 3),
        expansion: float = 0.5,
    ) -> None:  # fmt: skip
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden, kernel_sizes[0])
        self.cv2 = Conv(hidden, out_channels, kernel_sizes[1])
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W] -> [B, out, H, W]``."""
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """YOLOv8's CSP block with every unit's output kept (see the module docstring).

    Args:
        in_channels, out_channels: widths.
        repeats: number of inner units.
        shortcut: residual bottlenecks.
        expansion: half width ``c = int(out_channels * expansion)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, repeats: int = 1, shortcut: bool = False, expansion: float = 0.5
    ) -> None:
        super().__init__()
        self.c = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, 2 * self.c, 1)
        self.cv2 = Conv((2 + repeats) * self.c, out_channels, 1)
        self.m = nn.ModuleList(self._unit(shortcut) for _ in range(repeats))

    def _unit(self, shortcut: bool) -> nn.Module:
        return Bottleneck(self.c, self.c, shortcut, (3, 3), expansion=1.0)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W] -> [B, out, H, W]``."""
        outputs = list(self.cv1(x).chunk(2, 1))
        for unit in self.m:
            outputs.append(unit(outputs[-1]))
        return self.cv2(torch.cat(outputs, 1))


class C3k(nn.Module):
    """A CSP block: ``cv3(cat(m(cv1(x)), cv2(x)))`` with ``repeats`` bottlenecks of ``kernel`` convs.

    Args:
        in_channels, out_channels: widths.
        repeats: bottlenecks in ``m``.
        shortcut: residual bottlenecks.
        expansion: branch width ``int(out_channels * expansion)``.
        kernel: kernel of both bottleneck convs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, repeats: int = 1, shortcut: bool = True, expansion: float = 0.5,
        kernel: int = 3,
    ) -> None:  # fmt: skip
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden, 1)
        self.cv2 = Conv(in_channels, hidden, 1)
        self.cv3 = Conv(2 * hidden, out_channels, 1)
        self.m = nn.Sequential(
            *(Bottleneck(hidden, hidden, shortcut, (kernel, kernel), expansion=1.0) for _ in range(repeats))
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W] -> [B, out, H, W]``."""
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(C2f):
    """YOLO11's block: :class:`C2f` whose units are two-bottleneck :class:`C3k` blocks (``c3k``)
    or plain bottlenecks.

    Args:
        in_channels, out_channels: widths.
        repeats: number of inner units.
        c3k: C3k units instead of bottlenecks.
        expansion: half width ``int(out_channels * expansion)``.
        shortcut: residual bottlenecks (YOLO11: always).
    """

    def __init__(
        self, in_channels: int, out_channels: int, repeats: int = 1, c3k: bool = False, expansion: float = 0.5,
        shortcut: bool = True,
    ) -> None:  # fmt: skip
        self.c3k = c3k
        super().__init__(in_channels, out_channels, repeats, shortcut, expansion)

    def _unit(self, shortcut: bool) -> nn.Module:
        if self.c3k:
            return C3k(self.c, self.c, 2, shortcut)
        return Bottleneck(self.c, self.c, shortcut, (3, 3), expansion=0.5)


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: ``cv2(cat(y, pool(y), pool²(y), pool³(y)))``, ``y = cv1(x)``.

    Args:
        in_channels, out_channels: widths (hidden ``in_channels // 2``).
        kernel: max-pool window (stride 1, padding ``kernel // 2``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 5) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = Conv(in_channels, hidden, 1)
        self.cv2 = Conv(hidden * 4, out_channels, 1)
        self.m = nn.MaxPool2d(kernel_size=kernel, stride=1, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W] -> [B, out, H, W]``."""
        pooled = [self.cv1(x)]
        for _ in range(3):
            pooled.append(self.m(pooled[-1]))
        return self.cv2(torch.cat(pooled, 1))


class Attention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions, plus a depthwise conv of the values.

    One 1x1 conv gives, per head, ``key_dim`` query, ``key_dim`` key and ``head_dim`` value channels
    (in that order); ``out = proj(attention(q, k, v) + pe(v))``.

    Args:
        channels: input and output width.
        num_heads: heads (``head_dim = channels // num_heads``).
        attn_ratio: ``key_dim = int(head_dim * attn_ratio)``.
    """

    def __init__(self, channels: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = Conv(channels, channels + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(channels, channels, 1, act=False)
        self.pe = Conv(channels, channels, 3, groups=channels, act=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        batch, channels, height, width = x.shape
        qkv = self.qkv(x).view(batch, self.num_heads, 2 * self.key_dim + self.head_dim, height * width)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        weights = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)  # [B, heads, N, N]
        attended = (v @ weights.transpose(-2, -1)).view(batch, channels, height, width)
        return self.proj(attended + self.pe(v.reshape(batch, channels, height, width)))


class PSABlock(nn.Module):
    """``x + attn(x)``, then ``+ ffn(.)`` (a 2x-wide 1x1 conv pair).

    Args:
        channels: width.
        attn_ratio: of the :class:`Attention`.
        num_heads: of the :class:`Attention`.
    """

    def __init__(self, channels: int, attn_ratio: float = 0.5, num_heads: int = 4) -> None:
        super().__init__()
        self.attn = Attention(channels, num_heads=num_heads, attn_ratio=attn_ratio)
        self.ffn = nn.Sequential(Conv(channels, channels * 2, 1), Conv(channels * 2, channels, 1, act=False))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    """A CSP block of :class:`PSABlock` units: ``cv2(cat(a, m(b)))`` with ``a, b`` the halves of ``cv1(x)``.

    Args:
        channels: input and output width.
        repeats: PSA blocks.
        expansion: half width ``c = int(channels * expansion)`` (heads: ``max(c // 64, 1)``).
    """

    def __init__(self, channels: int, repeats: int = 1, expansion: float = 0.5) -> None:
        super().__init__()
        self.c = int(channels * expansion)
        self.cv1 = Conv(channels, 2 * self.c, 1)
        self.cv2 = Conv(2 * self.c, channels, 1)
        self.m = nn.Sequential(
            *(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)) for _ in range(repeats))
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))
