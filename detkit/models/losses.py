"""Detection losses: box regression (smooth L1, L1, GIoU) and classification (focal, SSD's mined CE).

Every loss takes ``reduction``: ``"none"`` (elementwise), ``"sum"`` or ``"mean"``. The mean of an
empty input is 0 (with a gradient path), not NaN, so an image with no positives costs nothing.
Heads do their own normalisation (by the number of positives or of sampled anchors); ``"sum"`` is
the usual choice for them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["none", "mean", "sum"]


def _reduce(loss: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float = 1.0, reduction: Reduction = "none") -> Tensor:
    """Huber-like loss of Fast R-CNN: quadratic below ``beta``, linear above.

    ``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta``, with ``d = input - target``
    (same values as ``torch.nn.functional.smooth_l1_loss``). ``beta`` below 1e-5 gives the L1 loss
    (detectron2's convention, which also avoids dividing by zero). torchvision's RPN and box head use
    ``beta = 1/9``, its SSD ``beta = 1``.

    Args:
        input: predictions, any shape (e.g. ``[N, 4]`` box deltas).
        target: same shape as ``input``.
        beta: width of the quadratic zone, in the units of ``input``; >= 0.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Loss of the shape of ``input`` for ``"none"``, else a scalar.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    distance = torch.abs(input - target)
    if beta < 1e-5:
        loss = distance
    else:
        loss = torch.where(distance < beta, 0.5 * distance * distance / beta, distance - 0.5 * beta)
    return _reduce(loss, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: Reduction = "none") -> Tensor:
    """``|input - target|`` elementwise, then reduced.

    Args:
        input: predictions, any shape.
        target: same shape as ``input``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Loss of the shape of ``input`` for ``"none"``, else a scalar.
    """
    return _reduce(torch.abs(input - target), reduction)


def giou_loss(boxes1: Tensor, boxes2: Tensor, reduction: Reduction = "none", eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of paired boxes (Rezatofighi et al. 2019), as ``torchvision.ops.generalized_box_iou_loss``.

    Symmetric in its arguments; in [0, 2]. Unlike :func:`detkit.ops.boxes.generalized_box_iou`
    it pairs ``boxes1[i]`` with ``boxes2[i]`` rather than all pairs.

    Args:
        boxes1: ``[N, 4]`` (or ``[4]``) xyxy boxes in pixels with ``x1 < x2``, ``y1 < y2``.
        boxes2: same shape as ``boxes1``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        eps: added to the union and enclosing areas (pixels squared) against division by zero.

    Returns:
        ``[N]`` losses for ``"none"``, else a scalar. Half-precision inputs are computed in float32.
    """
    if boxes1.dtype not in (torch.float32, torch.float64):
        boxes1 = boxes1.float()
    if boxes2.dtype not in (torch.float32, torch.float64):
        boxes2 = boxes2.float()
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)

    # Intersection, zero when the boxes do not overlap.
    intersection = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp(min=0) * (
        torch.min(y2, y2g) - torch.max(y1, y1g)
    ).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    iou = intersection / (union + eps)

    enclosing_area = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    giou = iou - (enclosing_area - union) / (enclosing_area + eps)
    return _reduce(1 - giou, reduction)


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: Reduction = "none"
) -> Tensor:
    """Focal loss of RetinaNet (Lin et al. 2017), as ``torchvision.ops.sigmoid_focal_loss``.

    ``alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)`` elementwise, with ``p = sigmoid(inputs)``,
    ``p_t = p`` for targets 1 and ``1 - p`` for targets 0, ``alpha_t = alpha`` for targets 1 and
    ``1 - alpha`` for targets 0.

    Args:
        inputs: logits, any shape (e.g. ``[A, num_classes]``, one binary classifier per class).
        targets: same shape, float, 1 for the positive class and 0 for the negative.
        alpha: weight of the positives in [0, 1], or -1 for no weighting.
        gamma: focusing exponent, >= 0 (0 gives the plain binary cross entropy).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Loss of the shape of ``inputs`` for ``"none"``, else a scalar.
    """
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"alpha must be in [0, 1] or -1 (no weighting), got {alpha}")
    probabilities = torch.sigmoid(inputs)
    cross_entropy = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    loss = cross_entropy * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def cross_entropy_with_hard_negative_mining(
    cls_logits: Tensor, labels: Tensor, neg_pos_ratio: int = 3
) -> tuple[Tensor, Tensor]:
    """SSD's classification loss (Liu et al. 2016, sec. 2.2): all positives, hardest negatives only.

    Per image, the background anchors are ranked by their cross-entropy loss and the
    ``neg_pos_ratio * num_positives`` highest are kept; the others, and ignored anchors, add
    nothing. As torchvision's ``SSD.compute_loss``, ranks come from a descending sort, so an image
    without positives keeps no negatives. One difference: when an image has fewer negatives than
    ``neg_pos_ratio * num_positives``, torchvision's mask can pick positives up as "negatives" and
    count their loss twice; here only true negatives are kept.

    To reproduce torchvision's SSD loss, divide by ``max(1, num_positives)``::

        loss_sum, num_positives = cross_entropy_with_hard_negative_mining(logits, labels)
        classification_loss = loss_sum / num_positives.clamp(min=1)

    (the same normaliser divides the summed box regression loss).

    Args:
        cls_logits: ``[N, A, C]`` logits for ``N`` images, ``A`` anchors, ``C`` classes of which
            index 0 is the background.
        labels: ``[N, A]`` int64: 0 background, ``1..C-1`` the class of a positive anchor, negative
            values ignored (neither positive nor negative).
        neg_pos_ratio: negatives kept per positive (3 in SSD).

    Returns:
        ``(loss_sum, num_positives)``: the summed cross entropy over positives and kept negatives
        (0-d, dtype of ``cls_logits``) and the number of positive anchors in the batch (0-d int64).
    """
    if cls_logits.dim() != 3 or labels.shape != cls_logits.shape[:2]:
        raise ValueError(
            f"cls_logits must be [N, A, C] and labels [N, A], got {list(cls_logits.shape)} and {list(labels.shape)}"
        )
    num_classes = cls_logits.shape[-1]
    losses = F.cross_entropy(
        cls_logits.reshape(-1, num_classes), labels.clamp(min=0).reshape(-1), reduction="none"
    ).view(labels.shape)

    positive = labels > 0
    negative = labels == 0
    num_positives_per_image = positive.sum(dim=1, keepdim=True)

    # Rank of each anchor's loss in its image, 0 the largest; non-negatives rank last (-inf).
    negative_losses = losses.masked_fill(~negative, -float("inf"))
    order = negative_losses.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    hard_negative = negative & (rank < neg_pos_ratio * num_positives_per_image)

    loss_sum = losses[positive].sum() + losses[hard_negative].sum()
    return loss_sum, num_positives_per_image.sum()
