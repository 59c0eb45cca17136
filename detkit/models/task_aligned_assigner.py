"""The task-aligned assigner of TOOD (Feng et al. 2021), as the anchor-free YOLOs (v8, 11) use it.

Each ground-truth box takes as positives the ``topk`` anchor points, among those whose centre lies
inside it, with the largest alignment metric ``t = s ** alpha * u ** beta``: ``s`` the predicted
score of the box's class at that point, ``u`` the CIoU (clamped at 0) of the point's predicted box
with the ground truth. Conventions of ultralytics' ``TaskAlignedAssigner`` (8.4), reproduced
exactly so that the losses match on the same predictions:

- A box narrower or shorter than ``min_side`` (the second stride, 16 px for strides 8/16/32) is
  widened to it about its centre for the "point inside the box" test only, so that small boxes
  still reach some points.
- The top-k is taken over all points (``torch.topk`` over the metric, zeros included) and then
  intersected with "inside the box": a box with fewer than ``topk`` inside points with a positive
  metric can still take inside points whose metric is 0.
- A point that several boxes select goes to the box with which its predicted box has the largest
  CIoU among all boxes it lies inside (that box need not be one of those that selected it).
- Soft targets: the one-hot class of the assigned box times ``t / max_t * max_u`` (the maxima over
  that box's positives), so that each box's best positive gets its best CIoU as target.

Boxes are padded per image to ``M`` (the largest count); ``gt_mask`` says which are real.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from detkit.ops.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, paired_complete_box_iou

__all__ = ["TaskAlignedAssigner", "TaskAlignedAssignment"]


class TaskAlignedAssignment(NamedTuple):
    """What :class:`TaskAlignedAssigner` returns, per image and anchor point.

    Attributes:
        labels: ``[B, A]`` int64 class of the assigned box (0 where none; see ``fg_mask``).
        boxes: ``[B, A, 4]`` xyxy pixels of the assigned box.
        scores: ``[B, A, C]`` soft class targets (0 for background points).
        fg_mask: ``[B, A]`` bool, points assigned a box.
        gt_index: ``[B, A]`` int64 index of the assigned box among the image's ``M`` slots.
    """

    labels: Tensor
    boxes: Tensor
    scores: Tensor
    fg_mask: Tensor
    gt_index: Tensor


class TaskAlignedAssigner(nn.Module):
    """Assign ground-truth boxes to anchor points by the task-aligned metric.

    Args:
        num_classes: ``C``, classes of the score maps.
        topk: Candidates per box.
        alpha: Exponent of the classification score in the metric.
        beta: Exponent of the CIoU in the metric.
        min_side: Boxes are widened to at least this side (pixels) for the "inside" test;
            ultralytics uses the second stride (the first when there is one level).
        eps: Guards the normalisation of the metric.
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        min_side: float = 16.0,
        eps: float = 1e-9,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"TaskAlignedAssigner: num_classes must be >= 1, got {num_classes}")
        if topk < 1:
            raise ValueError(f"TaskAlignedAssigner: topk must be >= 1, got {topk}")
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.min_side = min_side
        self.eps = eps

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, topk={self.topk}, alpha={self.alpha}, beta={self.beta}, "
                f"min_side={self.min_side}")

    @torch.no_grad()
    def forward(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        points: Tensor,
        gt_labels: Tensor,
        gt_boxes: Tensor,
        gt_mask: Tensor,
    ) -> TaskAlignedAssignment:
        """Assign.

        Args:
            pred_scores: ``[B, A, C]`` class probabilities (after the sigmoid).
            pred_boxes: ``[B, A, 4]`` predicted xyxy boxes, pixels.
            points: ``[A, 2]`` anchor points ``(x, y)``, pixels.
            gt_labels: ``[B, M]`` int64 0-based classes (any value in padded slots).
            gt_boxes: ``[B, M, 4]`` xyxy pixels (any value in padded slots).
            gt_mask: ``[B, M]`` bool, real boxes.

        Returns:
            A :class:`TaskAlignedAssignment`.
        """
        batch, num_points, num_classes = pred_scores.shape
        num_boxes = gt_boxes.shape[1]
        if num_boxes == 0:
            return TaskAlignedAssignment(
                labels=torch.full((batch, num_points), num_classes, dtype=torch.int64, device=pred_scores.device),
                boxes=torch.zeros_like(pred_boxes),
                scores=torch.zeros_like(pred_scores),
                fg_mask=torch.zeros((batch, num_points), dtype=torch.bool, device=pred_scores.device),
                gt_index=torch.zeros((batch, num_points), dtype=torch.int64, device=pred_scores.device),
            )
        gt_mask = gt_mask.bool()
        gt_labels = gt_labels.long()
        inside = self._points_inside(points, gt_boxes, gt_mask) & gt_mask[..., None]  # [B, M, A]
        metric, overlaps = self._metrics(pred_scores, pred_boxes, gt_labels, gt_boxes, inside)
        positive = self._topk_mask(metric, gt_mask) & inside  # [B, M, A]
        positive = self._resolve_multiple(positive, overlaps)
        fg_mask, gt_index = positive.to(torch.int8).max(dim=1)  # [B, A] each (ties: the first box)
        fg_mask = fg_mask.bool()

        image = torch.arange(batch, device=gt_boxes.device)[:, None]
        labels = gt_labels[image, gt_index].clamp(min=0)  # [B, A]
        boxes = gt_boxes[image, gt_index]  # [B, A, 4]
        # Soft targets: the metric of each positive over its box's best metric, times the box's best
        # CIoU; 0 at background points (no positive in their column), so no foreground mask is needed.
        metric = metric * positive
        overlaps = overlaps * positive
        best_metric = metric.amax(dim=-1, keepdim=True)  # [B, M, 1]
        best_overlap = overlaps.amax(dim=-1, keepdim=True)
        normalised = (metric * best_overlap / (best_metric + self.eps)).amax(dim=1)  # [B, A]
        scores = torch.zeros((batch, num_points, num_classes), dtype=pred_scores.dtype, device=pred_scores.device)
        scores.scatter_(2, labels[..., None], normalised[..., None])
        return TaskAlignedAssignment(labels, boxes, scores, fg_mask, gt_index)

    def _points_inside(self, points: Tensor, gt_boxes: Tensor, gt_mask: Tensor) -> Tensor:
        """``[B, M, A]`` points strictly inside the boxes, boxes widened to ``min_side`` (see module doc)."""
        centre_size = box_xyxy_to_cxcywh(gt_boxes)
        size = centre_size[..., 2:]
        small = (size < self.min_side) & gt_mask[..., None]
        size = torch.where(small, torch.full_like(size, self.min_side), size)
        widened = box_cxcywh_to_xyxy(torch.cat([centre_size[..., :2], size], dim=-1))
        top_left, bottom_right = widened[:, :, None, :2], widened[:, :, None, 2:]  # [B, M, 1, 2]
        # The same strict comparisons (with a 1e-9 margin) as ultralytics', side by side.
        return ((points - top_left) > self.eps).all(-1) & ((bottom_right - points) > self.eps).all(-1)

    def _metrics(
        self, pred_scores: Tensor, pred_boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor, candidates: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Alignment metric and CIoU ``[B, M, A]``, computed for the candidate pairs only (0 elsewhere)."""
        image, box, point = candidates.nonzero(as_tuple=True)
        scores = pred_scores[image, point, gt_labels[image, box]]
        ious = paired_complete_box_iou(gt_boxes[image, box], pred_boxes[image, point]).clamp(min=0)
        overlaps = torch.zeros(candidates.shape, dtype=pred_boxes.dtype, device=pred_boxes.device)
        metric = torch.zeros(candidates.shape, dtype=pred_scores.dtype, device=pred_scores.device)
        overlaps[image, box, point] = ious
        metric[image, box, point] = scores.pow(self.alpha) * ious.pow(self.beta)
        return metric, overlaps

    def _topk_mask(self, metric: Tensor, gt_mask: Tensor) -> Tensor:
        """``[B, M, A]`` bool: the ``topk`` points of each real box by metric (ties as ``torch.topk``)."""
        topk = min(self.topk, metric.shape[-1])
        index = torch.topk(metric, topk, dim=-1, largest=True).indices  # [B, M, k]
        selected = torch.zeros(metric.shape, dtype=torch.bool, device=metric.device)
        selected.scatter_(-1, index, True)
        return selected & gt_mask[..., None]

    @staticmethod
    def _resolve_multiple(positive: Tensor, overlaps: Tensor) -> Tensor:
        """Points positive for several boxes keep only the box of largest CIoU with their prediction."""
        several = positive.sum(dim=1, keepdim=True) > 1  # [B, 1, A]
        best = torch.zeros_like(positive)
        best.scatter_(1, overlaps.max(dim=1, keepdim=True).indices, True)
        return torch.where(several, best, positive)
