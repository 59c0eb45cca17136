"""The sigmoid focal loss of the dense heads, from class labels, with a closed-form gradient.

RetinaNet and FCOS (Lin et al. 2017, "Focal Loss for Dense Object Detection", sec. 3.2) apply the
focal loss to every (anchor, class) pair of a ``[B, A, C]`` logit tensor whose targets are one-hot
rows: at most one positive class per anchor. :func:`~detkit.models.losses.sigmoid_focal_loss`
(torchvision's ``sigmoid_focal_loss``) needs the one-hot ``[B, A, C]`` targets and keeps about ten
``[B, A, C]`` intermediates alive for autograd; at 800 px (about 160k anchors, 91 classes) each is
60 MB per image. :func:`dense_focal_loss` takes the positive class of each anchor instead (``-1``:
none), computes the loss of every pair as a negative, corrects the ``A_pos`` positive pairs with a
gather, and writes the gradient in closed form in one pass, so autograd keeps only the logits.

With ``p = sigmoid(x)`` and ``softplus(x) = -log(1 - p)``:

* negative pair: ``(1 - alpha) * p**gamma * softplus(x)``,
  gradient ``(1 - alpha) * p**gamma * (gamma * (1 - p) * softplus(x) + p)``;
* positive pair: ``alpha * (1 - p)**gamma * softplus(-x)``,
  gradient ``-alpha * (1 - p)**gamma * (gamma * p * softplus(-x) + 1 - p)``;

(``alpha = -1``: both weights 1), each times the anchor's weight (e.g. 0 for ignored anchors and
``1 / (foreground count * images)`` for RetinaNet's per-image normalisation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dense_focal_loss"]


def _class_weights(alpha: float) -> tuple[float, float]:
    """``(positive weight, negative weight)`` of ``alpha`` (``-1``: no weighting)."""
    return (1.0, 1.0) if alpha < 0 else (alpha, 1.0 - alpha)


def _negative_terms(logits: Tensor, gamma: float, weight: float) -> tuple[Tensor, Tensor]:
    """``(loss, gradient)`` of every element as a negative pair, ``[B, A, C]`` each (four such
    tensors at most alive)."""
    probabilities = torch.sigmoid(logits)
    softplus = F.softplus(logits)
    gradient = torch.addcmul(probabilities, softplus, 1 - probabilities, value=gamma)
    focus = probabilities.pow_(gamma) if gamma != 2.0 else probabilities.mul_(probabilities)
    loss = softplus.mul_(focus)
    gradient.mul_(focus)
    if weight != 1.0:
        loss.mul_(weight)
        gradient.mul_(weight)
    return loss, gradient


def _positive_terms(logits: Tensor, gamma: float, weight: float) -> tuple[Tensor, Tensor]:
    """``(loss, gradient)`` of the elements ``logits [P]`` as positive pairs."""
    probabilities = torch.sigmoid(logits)
    softplus = F.softplus(-logits)
    focus = (1 - probabilities).pow(gamma)
    loss = weight * focus * softplus
    gradient = -weight * focus * (gamma * probabilities * softplus + 1 - probabilities)
    return loss, gradient


class _DenseFocalLoss(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, labels: Tensor, weights: Tensor | None, alpha: float, gamma: float
    ) -> Tensor:
        positive_weight, negative_weight = _class_weights(alpha)
        loss, gradient = _negative_terms(logits.detach(), gamma, negative_weight)  # [B, A, C]
        flat_loss, flat_gradient = loss.view(-1, loss.shape[-1]), gradient.view(-1, gradient.shape[-1])
        rows = torch.nonzero(labels.reshape(-1) >= 0).squeeze(1)  # positive anchors
        columns = labels.reshape(-1)[rows]
        positive_logits = logits.detach().reshape(-1, logits.shape[-1])[rows, columns]
        positive_loss, positive_gradient = _positive_terms(positive_logits, gamma, positive_weight)
        flat_loss[rows, columns] = positive_loss
        flat_gradient[rows, columns] = positive_gradient
        if weights is not None:
            anchor_weights = weights.to(loss.dtype).unsqueeze(-1)
            loss.mul_(anchor_weights)
            gradient.mul_(anchor_weights)
        ctx.save_for_backward(gradient)
        return loss.sum()

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        (gradient,) = ctx.saved_tensors
        return gradient * grad_output, None, None, None, None


def dense_focal_loss(
    logits: Tensor, labels: Tensor, weights: Tensor | None = None, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Sum of the sigmoid focal loss of one-hot targets, given as each anchor's class (module docstring).

    Equal (to float rounding) to ``(sigmoid_focal_loss(logits, one_hot(labels)) * weights[..., None]).sum()``.

    Args:
        logits: ``[B, A, C]`` class logits (any leading shape ``[..., C]``).
        labels: ``[B, A]`` int64 positive class of each anchor in ``[0, C)``, or ``-1`` for none.
        weights: ``[B, A]`` weight of each anchor's ``C`` terms, or None (1).
        alpha: weight of the positives in [0, 1], or -1 for no weighting.
        gamma: focusing exponent, >= 0.

    Returns:
        A scalar.

    Raises:
        ValueError: ``alpha`` or ``gamma`` out of range, or ``labels`` / ``weights`` not of the
            logits' leading shape.
    """
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"dense_focal_loss: alpha must be in [0, 1] or -1 (no weighting), got {alpha}")
    if gamma < 0:
        raise ValueError(f"dense_focal_loss: gamma must be >= 0, got {gamma}")
    if labels.shape != logits.shape[:-1] or (weights is not None and weights.shape != logits.shape[:-1]):
        raise ValueError(
            f"dense_focal_loss: labels {list(labels.shape)} and weights "
            f"{None if weights is None else list(weights.shape)} must be the logits' {list(logits.shape[:-1])}"
        )
    return _DenseFocalLoss.apply(logits, labels, weights, float(alpha), float(gamma))
