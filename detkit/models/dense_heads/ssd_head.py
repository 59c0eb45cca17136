"""SSD's prediction head and SSDLite's depthwise-separable variant.

For each feature map ``k`` one predictor gives ``P_k * (num_classes + 1)`` class logits and one
gives ``P_k * 4`` box deltas per cell (``P_k`` default boxes per cell): a 3x3 conv in SSD (Liu et
al. 2016, sec. 2.1), a depthwise 3x3 conv + BatchNorm + ReLU6 followed by a 1x1 conv in SSDLite
(MobileNetV2 paper, sec. 6.2).

Output order (torchvision's ``SSDScoringHead``): the ``P_k * K`` channels of a cell are read as
``[P_k, K]`` (box-major), and anchors are flattened level by level, then ``y``, ``x``, box, the
order of :class:`~detkit.models.default_boxes.DefaultBoxGenerator`.

Classes: index 0 of the logits is the background, object class ``c`` (detkit's 0-based label) is
index ``c + 1``, as torchvision's, so converted weights need no reordering.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.models.layers import ConvNormAct


def _flatten_predictions(outputs: Sequence[Tensor], num_columns: int) -> Tensor:
    """``[N, P_k * K, H_k, W_k]`` per level -> ``[N, sum_k H_k W_k P_k, K]`` (y, x, box order)."""
    flat = []
    for output in outputs:
        batch, _, height, width = output.shape
        output = output.view(batch, -1, num_columns, height, width).permute(0, 3, 4, 1, 2)
        flat.append(output.reshape(batch, -1, num_columns))
    return torch.cat(flat, dim=1)


class SSDHead(nn.Module):
    """SSD's head: a 3x3 conv for class logits and one for box deltas on each feature map.

    Args:
        in_channels: channels of each feature map, shallowest first.
        num_anchors: default boxes per cell of each feature map
            (``DefaultBoxGenerator.num_anchors_per_location()``).
        num_classes: object classes (the background logit is added here).

    Attributes:
        cls_logits: one predictor per level, ``[N, C_k, H, W] -> [N, P_k * (num_classes + 1), H, W]``.
        bbox_pred: one predictor per level, ``[N, C_k, H, W] -> [N, P_k * 4, H, W]``.
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if len(in_channels) != len(num_anchors):
            raise ValueError(
                f"got {len(in_channels)} in_channels but {len(num_anchors)} num_anchors (one each per feature map)"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes (object classes, background excluded) must be >= 1, got {num_classes}")
        self.in_channels = [int(c) for c in in_channels]
        self.num_anchors = [int(a) for a in num_anchors]
        self.num_classes = num_classes
        levels = list(zip(self.in_channels, self.num_anchors))
        num_columns = num_classes + 1  # background first
        self.cls_logits = nn.ModuleList(self._predictor(channels, anchors * num_columns) for channels, anchors in levels)
        self.bbox_pred = nn.ModuleList(self._predictor(channels, anchors * 4) for channels, anchors in levels)
        self._init_weights()

    def _predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def _init_weights(self) -> None:
        # SSD (and torchvision's SSDHead): Xavier-uniform weights, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Predict class logits and box deltas for every default box.

        Args:
            features: ``[N, C_k, H_k, W_k]`` feature maps, shallowest first.

        Returns:
            ``(cls_logits [N, A, num_classes + 1], bbox_deltas [N, A, 4])`` with
            ``A = sum_k H_k * W_k * P_k`` in default-box order; column 0 of the logits is the
            background.
        """
        if len(features) != len(self.cls_logits):
            name = type(self).__name__
            raise ValueError(f"{name} has {len(self.cls_logits)} levels, got {len(features)} feature maps")
        for level, (feature, channels) in enumerate(zip(features, self.in_channels)):
            if feature.dim() != 4 or feature.shape[1] != channels:
                name = type(self).__name__
                expected = f"[N, {channels}, H, W]"
                raise ValueError(f"{name}: feature map {level} must be {expected}, got {list(feature.shape)}")
        logits = _flatten_predictions([conv(x) for conv, x in zip(self.cls_logits, features)], self.num_classes + 1)
        deltas = _flatten_predictions([conv(x) for conv, x in zip(self.bbox_pred, features)], 4)
        return logits, deltas


class SSDLiteHead(SSDHead):
    """SSDLite's head: depthwise 3x3 conv + norm + ReLU6, then a 1x1 conv, per level and output.

    Keys of a predictor: ``0.0`` depthwise conv, ``0.1`` norm, ``1`` the 1x1 conv (torchvision's
    ``_prediction_block``).

    Args:
        in_channels: channels of each feature map, shallowest first.
        num_anchors: default boxes per cell of each feature map.
        num_classes: object classes (the background logit is added here).
        norm: norm kind of the depthwise convs (``"bn"`` as torchvision).
        norm_eps: norm ``eps`` (1e-3, torchvision's SSDLite).
        norm_momentum: BatchNorm momentum (0.03, torchvision's SSDLite).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_anchors: Sequence[int],
        num_classes: int,
        *,
        norm: str = "bn",
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.03,
    ) -> None:
        # Plain attributes may be set before nn.Module.__init__; _predictor needs them.
        self.norm = norm
        self.norm_eps = norm_eps
        super().__init__(in_channels, num_anchors, num_classes)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = norm_momentum

    def _predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Sequential(
            ConvNormAct(
                in_channels, in_channels, 3, groups=in_channels, norm=self.norm, norm_eps=self.norm_eps,
                activation=nn.ReLU6,
            ),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )

    def _init_weights(self) -> None:
        # torchvision's SSDLite (_normal_init): N(0, 0.03) conv weights, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
