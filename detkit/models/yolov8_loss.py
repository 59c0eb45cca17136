"""The training loss of the anchor-free YOLOs (YOLOv8, YOLO11): task-aligned assignment, then
CIoU + distribution focal loss (DFL) on the boxes and binary cross-entropy on the classes.

Equal to ultralytics' ``v8DetectionLoss`` (8.4) on the same raw maps and targets, term by term:

- Points: the cell centres ``(col + 0.5, row + 0.5)`` of every level (in cells of that level);
  boxes are predicted as distances ``(l, t, r, b)`` from the point, each the expectation of a
  softmax over the bins ``0 .. reg_max - 1`` (cells).
- Assignment: :class:`~detkit.models.task_aligned_assigner.TaskAlignedAssigner` (top 10,
  alpha 0.5, beta 6) on the sigmoid scores and the decoded boxes in pixels (detached).
- ``S``: the sum of the soft class targets over the batch, at least 1; every term is divided by it.
- ``loss_cls = cls_weight * sum BCE(logits, soft targets) / S`` over every point and class.
- ``loss_box = box_weight * sum_fg (1 - CIoU(pred, target)) * w / S``, with ``w`` the point's soft
  target summed over classes; the CIoU (in cells of the point's level) is
  :func:`~detkit.ops.boxes.paired_complete_box_iou`.
- ``loss_dfl = dfl_weight * sum_fg DFL * w / S``: the cross-entropy of each side's distribution
  with the two bins around the target distance (clamped to ``[0, reg_max - 1.01]``), weighted by
  nearness, averaged over the four sides. With ``reg_max=1`` (no distribution) it is ultralytics'
  L1 distance loss instead: the L1 of the four distances in pixels divided by the image's width
  (x) or height (y), averaged.

Scale: the three values returned are ultralytics' ``loss_items`` (its second output, what it
logs). ultralytics back-propagates ``loss.sum() * batch_size``: its gradients are ``batch_size``
times detkit's, so an ultralytics SGD recipe maps to lr x batch size and weight decay / batch size
on detkit's loss (``configs/common/ultralytics_recipe.py`` states the whole mapping).

Differences by design: padded target slots are known from the targets (ultralytics treats a box
whose four coordinates sum to 0 as padding, which only a degenerate box at the origin hits), and
the loss is computed in float32 whatever the dtype of the raw maps (autocast is off inside).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.dense_heads.yolov8_head import anchor_points
from detkit.models.task_aligned_assigner import TaskAlignedAssigner
from detkit.ops.boxes import paired_complete_box_iou

__all__ = ["YOLOv8Loss", "distribution_focal_loss"]


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Distribution focal loss (Li et al. 2020, generalized focal loss) of each side.

    Args:
        logits: ``[N, 4, R]`` logits over the bins ``0 .. R - 1``.
        target: ``[N, 4]`` target distances in bins, in ``[0, R - 1)``.

    Returns:
        ``[N]`` the loss averaged over the four sides: ``-(w_l log p[floor] + w_r log p[floor + 1])``
        with ``w_l = floor + 1 - target``, ``w_r = 1 - w_l``.
    """
    left = target.long()
    right = left + 1
    weight_left = right - target
    weight_right = 1 - weight_left
    log_probs = F.log_softmax(logits, dim=-1)
    picked_left = log_probs.gather(-1, left[..., None]).squeeze(-1)
    picked_right = log_probs.gather(-1, right[..., None]).squeeze(-1)
    return -(picked_left * weight_left + picked_right * weight_right).mean(-1)


class YOLOv8Loss(nn.Module):
    """YOLOv8 / YOLO11 detection loss (see the module doc for the terms and their scale).

    Args:
        num_classes: ``C``.
        reg_max: Bins per box side (16 in YOLOv8 and YOLO11; 1: the distances directly, L1 loss).
        strides: Pixels per cell of each level of ``raw``, shallowest first.
        box_weight: Gain of ``loss_box`` (ultralytics' ``box``).
        cls_weight: Gain of ``loss_cls`` (``cls``).
        dfl_weight: Gain of ``loss_dfl`` (``dfl``).
        topk: Candidates per box of the assigner.
        alpha: Exponent of the class score in the assigner's metric.
        beta: Exponent of the CIoU in the assigner's metric.
    """

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 16,
        strides: Sequence[int] = (8, 16, 32),
        box_weight: float = 7.5,
        cls_weight: float = 0.5,
        dfl_weight: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        super().__init__()
        if reg_max < 1:
            raise ValueError(f"YOLOv8Loss: reg_max must be >= 1, got {reg_max}")
        if not strides:
            raise ValueError("YOLOv8Loss: strides must name at least one level")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(int(s) for s in strides)
        self.box_weight = box_weight
        self.cls_weight = cls_weight
        self.dfl_weight = dfl_weight
        # ultralytics widens small boxes to the second stride for the "point inside" test.
        min_side = self.strides[1] if len(self.strides) > 1 else self.strides[0]
        self.assigner = TaskAlignedAssigner(num_classes, topk=topk, alpha=alpha, beta=beta, min_side=min_side)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, reg_max={self.reg_max}, strides={self.strides}, "
                f"box_weight={self.box_weight}, cls_weight={self.cls_weight}, dfl_weight={self.dfl_weight}")

    def forward(
        self, raw: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]], image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """The three weighted loss terms of a batch.

        Args:
            raw: Per level ``[B, 4 * reg_max + C, H_l, W_l]``: the box distributions (side-major:
                ``reg_max`` bins of l, then t, r, b) then the class logits (ultralytics' ``Detect``
                in training mode, box and class maps concatenated on channels).
            targets: Per image ``boxes [N, 4]`` xyxy pixels of the batch image, ``labels [N]``
                int64 in ``[0, C)``.
            image_size: ``(H, W)`` of the padded batch image (the L1 form's normalisation).

        Returns:
            ``{"loss_box", "loss_cls", "loss_dfl"}`` scalars, already weighted.
        """
        flat, sizes = self._flatten(raw, len(targets))
        with torch.autocast(flat.device.type, enabled=False):  # float32 throughout, under AMP too
            return self._loss(flat, sizes, targets, image_size)

    def _loss(
        self, flat: Tensor, sizes: list[tuple[int, int]], targets: Sequence[Mapping[str, Tensor]],
        image_size: tuple[int, int],
    ) -> dict[str, Tensor]:
        # Point-major rows (``flat`` is [B, A, 4R + C]): the softmax, sigmoid and BCE below run along
        # them. A split (not two slices): its backward concatenates the two gradients instead of
        # writing each into a zero-filled copy of ``flat``.
        pred_dist, logits = flat.split((4 * self.reg_max, self.num_classes), -1)  # [B, A, 4R], [B, A, C]
        points, strides = anchor_points(sizes, self.strides, flat.dtype, flat.device)
        points, strides = points.T, strides.T  # [A, 2] cells, [A, 1] pixels per cell

        distances = self._distances(pred_dist)  # [B, A, 4] cells
        left_top, right_bottom = distances.split(2, -1)  # a split: no zero-filled gradient per slice
        pred_boxes = torch.cat([points - left_top, points + right_bottom], -1)
        gt_labels, gt_boxes, gt_mask = self._padded_targets(targets, flat.device)
        assignment = self.assigner(
            logits.detach().sigmoid(), pred_boxes.detach() * strides, points * strides, gt_labels, gt_boxes, gt_mask
        )
        score_sum = assignment.scores.sum().clamp(min=1)
        loss_cls = F.binary_cross_entropy_with_logits(logits, assignment.scores, reduction="none").sum() / score_sum

        fg = assignment.fg_mask
        weight = assignment.scores[fg].sum(-1)  # [P]
        target_boxes = assignment.boxes / strides  # cells
        ciou = paired_complete_box_iou(pred_boxes[fg], target_boxes[fg])
        loss_box = ((1.0 - ciou) * weight).sum() / score_sum
        target_distances = torch.cat([points - target_boxes[..., :2], target_boxes[..., 2:] - points], -1)
        if self.reg_max > 1:
            target_distances = target_distances.clamp(0, self.reg_max - 1 - 0.01)
            side_losses = distribution_focal_loss(pred_dist[fg].view(-1, 4, self.reg_max), target_distances[fg])
        else:  # ultralytics' L1 form: distances in pixels over the image's width (x) and height (y)
            scale = strides / torch.tensor([image_size[1], image_size[0]] * 2, dtype=flat.dtype, device=flat.device)
            side_losses = (distances * scale - target_distances * scale)[fg].abs().mean(-1)
        loss_dfl = (side_losses * weight).sum() / score_sum
        return {
            "loss_box": loss_box * self.box_weight,
            "loss_cls": loss_cls * self.cls_weight,
            "loss_dfl": loss_dfl * self.dfl_weight,
        }

    def _flatten(self, raw: Sequence[Tensor], batch: int) -> tuple[Tensor, list[tuple[int, int]]]:
        """``[B, A, 4R + C]`` float32 rows of all levels' points and the ``(H_l, W_l)`` of each.

        Point-major by a permute and a reshape: a view of channels-last maps (what the detector
        trains on, on the CPU), one copy of NCHW ones; the concatenation over levels copies once.
        """
        if len(raw) != len(self.strides):
            raise ValueError(f"YOLOv8Loss: raw has {len(raw)} levels but strides name {len(self.strides)}")
        channels = 4 * self.reg_max + self.num_classes
        for level, maps in enumerate(raw):
            if maps.dim() != 4 or maps.shape[1] != channels or maps.shape[0] != batch:
                raise ValueError(
                    f"YOLOv8Loss: raw[{level}] must be [{batch}, {channels}, H, W] (4 * reg_max + num_classes "
                    f"channels for {batch} targets), got {list(maps.shape)}"
                )
        sizes = [(int(maps.shape[2]), int(maps.shape[3])) for maps in raw]
        rows = [maps.float().permute(0, 2, 3, 1).reshape(batch, -1, channels) for maps in raw]
        return torch.cat(rows, 1), sizes

    def _distances(self, pred_dist: Tensor) -> Tensor:
        """``[B, A, 4]`` expected side distances in cells (the raw values when ``reg_max=1``)."""
        if self.reg_max == 1:
            return pred_dist
        batch, num_points, _ = pred_dist.shape
        return pred_dist.view(batch, num_points, 4, self.reg_max).softmax(3).matmul(self.bins.to(pred_dist.dtype))

    def _padded_targets(
        self, targets: Sequence[Mapping[str, Tensor]], device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(labels [B, M] int64, boxes [B, M, 4], mask [B, M] bool)``, zero-padded to the largest count."""
        counts = []
        for i, target in enumerate(targets):
            boxes, labels = target["boxes"], target["labels"]
            if boxes.dim() != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
                raise ValueError(
                    f"YOLOv8Loss: targets[{i}] needs boxes [N, 4] and labels [N], got {list(boxes.shape)} and "
                    f"{list(labels.shape)}"
                )
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(
                    f"YOLOv8Loss: targets[{i}]['labels'] must be in [0, {self.num_classes}), got "
                    f"{int(labels.min())}..{int(labels.max())}"
                )
            counts.append(len(boxes))
        most = max(counts, default=0)
        labels = torch.zeros(len(targets), most, dtype=torch.int64, device=device)
        boxes = torch.zeros(len(targets), most, 4, device=device)
        mask = torch.zeros(len(targets), most, dtype=torch.bool, device=device)
        for i, (target, count) in enumerate(zip(targets, counts)):
            labels[i, :count] = target["labels"].to(device)
            boxes[i, :count] = target["boxes"].to(device, torch.float32)
            mask[i, :count] = True
        return labels, boxes, mask
