"""MTCNN's three networks (Zhang et al. 2016): PNet (12x12 windows, fully convolutional), RNet
(24x24 crops) and ONet (48x48 crops, with five landmarks).

Layer names are facenet-pytorch's, so its ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` load as they
are (:mod:`detkit.models.convert.mtcnn_facenet`). The networks see ``(v - 127.5) * 0.0078125`` of
0-255 pixel values, as the original Caffe models; that affine map is folded into each network's
first convolution (``input_scale``, ``input_shift``: :func:`input_affine`), which saves two passes
over every pyramid level and crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PIXEL_MEAN", "PIXEL_SCALE", "ONet", "PNet", "RNet", "input_affine"]

PIXEL_MEAN = 127.5  # (v - 127.5) * 0.0078125 on 0-255 values, as the original Caffe models
PIXEL_SCALE = 0.0078125  # 1 / 128


def _conv_on_affine_input(conv: nn.Conv2d, x: Tensor, scale: float, shift: float) -> Tensor:
    """``conv(x * scale + shift)`` with the affine map folded into the weights (no padding, so exact
    up to rounding); saves two passes over every pyramid level and crop at inference."""
    if scale == 1.0 and shift == 0.0:
        return conv(x)
    bias = conv.bias + shift * conv.weight.sum(dim=(1, 2, 3))
    return F.conv2d(x, conv.weight * scale, bias, conv.stride)


class PNet(nn.Module):
    """Proposal network: fully convolutional, one 12x12 window per output cell (stride 2).

    Layer names are facenet-pytorch's, so its ``pnet.pt`` loads as it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: Tensor, input_scale: float = 1.0, input_shift: float = 0.0) -> tuple[Tensor, Tensor]:
        """Args: x ``[N, 3, H, W]`` (H, W >= 12); the network sees ``x * input_scale + input_shift``.

        Returns:
            ``logits [N, 2, h, w]`` (non-face, face) and ``box_deltas [N, 4, h, w]`` with
            ``h = ceil((H - 2) / 2) - 4``.
        """
        x = self.prelu1(_conv_on_affine_input(self.conv1, x, input_scale, input_shift))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        # Both 1x1 heads as one convolution: one pass over the features.
        weight = torch.cat([self.conv4_1.weight, self.conv4_2.weight])
        heads = F.conv2d(x, weight, torch.cat([self.conv4_1.bias, self.conv4_2.bias]))
        return heads[:, :2], heads[:, 2:]


class RNet(nn.Module):
    """Refinement network on 24x24 crops (facenet-pytorch's layer names)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor, input_scale: float = 1.0, input_shift: float = 0.0) -> tuple[Tensor, Tensor]:
        """Args: x ``[N, 3, 24, 24]``, seen as ``x * input_scale + input_shift``.

        Returns:
            ``logits [N, 2]`` and ``box_deltas [N, 4]``.
        """
        x = self.pool1(self.prelu1(_conv_on_affine_input(self.conv1, x, input_scale, input_shift)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights come from Caffe/TF models flattened as (N, W, H, C): permute before flattening.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_1(x), self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48x48 crops: scores, box deltas and five landmarks (facenet-pytorch's names)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor, input_scale: float = 1.0, input_shift: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
        """Args: x ``[N, 3, 48, 48]``, seen as ``x * input_scale + input_shift``.

        Returns:
            ``logits [N, 2]``, ``box_deltas [N, 4]`` and ``landmarks [N, 10]``: five x then five
            y, as fractions of the box (see the module docstring).
        """
        x = self.pool1(self.prelu1(_conv_on_affine_input(self.conv1, x, input_scale, input_shift)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))  # (N, W, H, C) as in RNet
        return self.dense6_1(x), self.dense6_2(x), self.dense6_3(x)


def input_affine(pixel_scale: float = 255.0) -> tuple[float, float]:
    """``(scale, shift)`` taking image values ``v`` to the networks' ``(pixel_scale v - 127.5) / 128``
    (the networks' ``input_scale`` and ``input_shift``)."""
    return pixel_scale * PIXEL_SCALE, -PIXEL_MEAN * PIXEL_SCALE
