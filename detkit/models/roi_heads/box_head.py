"""Fast R-CNN's box head: two fully connected layers, then class scores and per-class box deltas.

Parameter names follow torchvision's ``TwoMLPHead`` (``fc6``, ``fc7``) and ``FastRCNNPredictor``
(``cls_score``, ``bbox_pred``), so torchvision checkpoints map by prefix only.

Background: the predictor has ``num_classes + 1`` score outputs, index 0 the background as in
torchvision, and object class ``k`` (detkit's 0-based label) at index ``k + 1``. ``bbox_pred``
keeps ``4 * (num_classes + 1)`` outputs (the background's deltas are never used) so that the layout
equals torchvision's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TwoMLPHead(nn.Module):
    """Flatten the pooled features, then two ReLU fully connected layers (FPN's "2fc" head).

    Args:
        in_channels: channels of the pooled features.
        resolution: side of the pooled features (7).
        representation_size: width of both layers (1024).
    """

    def __init__(self, in_channels: int, resolution: int = 7, representation_size: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels * resolution * resolution, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.out_channels = representation_size

    def forward(self, features: Tensor) -> Tensor:
        """``[R, C, S, S]`` pooled features -> ``[R, representation_size]``."""
        return F.relu(self.fc7(F.relu(self.fc6(features.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """Class logits (with background at index 0) and class-specific box deltas.

    Args:
        in_channels: width of the box head's output.
        num_classes: number of object classes, background excluded.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"FastRCNNPredictor: num_classes must be >= 1 (object classes), got {num_classes}")
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, (num_classes + 1) * 4)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Scores and deltas.

        Args:
            features: ``[R, in_channels]`` (or ``[R, in_channels, 1, 1]``).

        Returns:
            ``(class_logits [R, num_classes + 1], box_deltas [R, 4 * (num_classes + 1)])``; deltas of
            class index ``j`` are columns ``4j:4j+4`` (Fast R-CNN weights ``(10, 10, 5, 5)``).
        """
        features = features.flatten(1)
        return self.cls_score(features), self.bbox_pred(features)
