"""From scored boxes to detections: threshold, pre-NMS top-k, NMS and the per-image cap, once.

:func:`select_detections` is the selection every head runs on one image (RPN proposals, SSD,
YOLOv3 and the R-CNN box head), in this order:

1. **Candidates.** ``scores [N]`` gives one candidate per box (its class, or NMS group, from
   ``labels``); ``scores [N, C]`` gives, with ``multi_label``, every (box, class) pair (box-major:
   box 0's classes first), or without it each box's best class (``scores.max(1)``).
2. **Score threshold**: ``score > score_thresh`` (``>=`` with ``thresh_inclusive``).
3. **Pre-NMS top-k** (``pre_nms_topk``): the best ``k`` of the image (``topk_per="image"``), of
   each class (``"class"``) or of each feature level (``"level"``, levels from ``levels``). A group
   with more than ``k`` candidates keeps its ``k`` best in decreasing score; smaller groups stay as
   they are. Per class on ``[N, C]`` scores the candidates come class-major: when no class has
   more than ``k`` candidates they are all kept, in (class, box) order, else each class keeps its
   ``k`` best in decreasing score (torchvision's SSD, which runs top-k before the threshold: the
   same candidates). The candidates' order only decides between boxes of exactly equal scores.
4. **Minimum size**: with ``min_size > 0``, boxes narrower or lower than it (pixels) are dropped.
5. **NMS** at ``nms_thresh``: ``"hard"`` greedy NMS within each class (detkit.ops.batched_nms;
   with ``nms_class_offset``, one NMS of the boxes shifted by ``label * offset``, ultralytics'
   way), or over all candidates with ``class_agnostic_nms``; ``"soft"`` Soft-NMS (detkit.ops.soft_nms,
   linear or gaussian decay, boxes decayed below ``soft_nms_min_score`` dropped), per class or
   agnostic, whose decayed scores replace the scores; ``"none"`` sorts by decreasing score.
6. **Cap**: the ``detections_per_img`` best.

:func:`topk_per_level` is step 3 per level for a whole batch before any box is decoded (the RPN
ranks its logits that way, as torchvision, and decodes only the candidates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from detkit.ops import batched_nms, nms, remove_small_boxes, soft_nms

__all__ = [
    "NMS_METHODS", "SOFT_NMS_METHODS", "TOPK_GROUPS", "NMSOptions", "Selection", "select_detections", "topk_per_level",
]  # fmt: skip

NMS_METHODS = ("hard", "soft", "none")
SOFT_NMS_METHODS = ("linear", "gaussian")
TOPK_GROUPS = ("image", "class", "level")


class NMSOptions:
    """Mixin giving a head the NMS settings of :func:`select_detections`, by their names there.

    The class attributes are the defaults (greedy NMS within each class); a head sets its own with
    :meth:`configure_nms` (from its constructor or ``configure``) and passes ``**nms_options()`` to
    :func:`select_detections`. ``nms_method="soft"`` with ``class_agnostic_nms=True`` is
    class-agnostic Soft-NMS.

    Attributes:
        nms_method: ``"hard"``, ``"soft"`` or ``"none"``.
        class_agnostic_nms: NMS over all classes at once instead of within each class.
        soft_nms_method: ``"linear"`` or ``"gaussian"`` decay of Soft-NMS.
        soft_nms_sigma: width of the gaussian decay.
        soft_nms_min_score: Soft-NMS drops boxes whose decayed score falls below this.
    """

    nms_method: str = "hard"
    class_agnostic_nms: bool = False
    soft_nms_method: str = "linear"
    soft_nms_sigma: float = 0.5
    soft_nms_min_score: float = 0.001

    def configure_nms(
        self,
        *,
        nms_method: str | None = None,
        class_agnostic_nms: bool | None = None,
        soft_nms_method: str | None = None,
        soft_nms_sigma: float | None = None,
        soft_nms_min_score: float | None = None,
    ) -> None:
        """Set the NMS settings that are given (None: unchanged).

        Raises:
            ValueError: an unknown ``nms_method`` or ``soft_nms_method``, or ``soft_nms_sigma <= 0``.
        """
        owner = type(self).__name__
        if nms_method is not None and nms_method not in NMS_METHODS:
            raise ValueError(f"{owner}: nms_method must be one of {NMS_METHODS}, got {nms_method!r}")
        if soft_nms_method is not None and soft_nms_method not in SOFT_NMS_METHODS:
            raise ValueError(f"{owner}: soft_nms_method must be one of {SOFT_NMS_METHODS}, got {soft_nms_method!r}")
        if soft_nms_sigma is not None and soft_nms_sigma <= 0:
            raise ValueError(f"{owner}: soft_nms_sigma must be > 0, got {soft_nms_sigma}")
        given = dict(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        for name, value in given.items():
            if value is not None:
                setattr(self, name, value)

    def nms_options(self) -> dict[str, object]:
        """The settings as :func:`select_detections` keyword arguments."""
        return dict(
            nms_method=self.nms_method, class_agnostic_nms=bool(self.class_agnostic_nms),
            soft_nms_method=self.soft_nms_method, soft_nms_sigma=self.soft_nms_sigma,
            soft_nms_min_score=self.soft_nms_min_score,
        )  # fmt: skip


class Selection(NamedTuple):
    """The detections :func:`select_detections` kept, by decreasing score.

    Attributes:
        boxes: ``[K, 4]`` xyxy, in the input boxes' pixels.
        scores: ``[K]`` (Soft-NMS: the decayed scores).
        labels: ``[K]`` int64: the class column of ``[N, C]`` scores, else the given ``labels``
            (zeros without them).
        indices: ``[K]`` int64 index of each detection's box in the input ``boxes``.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    indices: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        """``{"boxes", "scores", "labels"}``, detkit's per-image prediction dict."""
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}


def _above(scores: Tensor, thresh: float, inclusive: bool) -> Tensor:
    return scores >= thresh if inclusive else scores > thresh


def _check_arguments(
    boxes: Tensor, scores: Tensor, labels: Tensor | None, levels: Tensor | None, topk_per: str, nms_method: str
) -> None:
    if scores.dim() not in (1, 2):
        raise ValueError(f"select_detections: scores must be [N] or [N, C], got {list(scores.shape)}")
    num_boxes = scores.shape[0]
    per_class_boxes = scores.dim() == 2 and boxes.dim() == 3
    expected = [num_boxes, scores.shape[1], 4] if per_class_boxes else [num_boxes, 4]
    if list(boxes.shape) != expected:
        raise ValueError(
            f"select_detections: boxes must be [N, 4] (or [N, C, 4] with [N, C] scores) = {expected}, "
            f"got {list(boxes.shape)}"
        )
    if labels is not None and (scores.dim() != 1 or labels.shape != (num_boxes,)):
        raise ValueError(f"select_detections: labels [N] go with [N] scores, got {list(labels.shape)} labels")
    if topk_per not in TOPK_GROUPS:
        raise ValueError(f"select_detections: topk_per must be one of {TOPK_GROUPS}, got {topk_per!r}")
    if topk_per == "level" and (levels is None or levels.shape != (num_boxes,)):
        raise ValueError("select_detections: topk_per='level' needs levels [N], the level of each box")
    if nms_method not in NMS_METHODS:
        raise ValueError(f"select_detections: nms_method must be one of {NMS_METHODS}, got {nms_method!r}")


def _dense_per_class_topk(
    scores: Tensor, k: int, thresh: float, inclusive: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Step 2-3 for ``[N, C]`` scores per class: ``(box_index, scores, labels)``, class-major.

    The ``k`` best of each class hold every candidate of a class with at most ``k`` of them, so
    one top-k then the threshold gives the candidates either way; only their order within a class
    depends on the data (box order when no class has more than ``k``, else decreasing score), and
    it is chosen with tensor ops, not a Python branch (torch.export-clean).
    """
    class_scores = scores.t()  # [C, N]
    k = min(k, scores.shape[0])
    top_scores, top_index = class_scores.topk(k, dim=1)  # [C, k]
    # No class has more than k candidates: every box above the threshold goes on, in box order.
    in_box_order = _above(class_scores, thresh, inclusive).sum(dim=1).max() <= k
    rank = torch.arange(k, device=scores.device).expand_as(top_index)
    order = torch.where(in_box_order, top_index, rank).argsort(dim=1)
    top_scores, top_index = top_scores.gather(1, order), top_index.gather(1, order)
    keep = _above(top_scores, thresh, inclusive)
    return top_index[keep], top_scores[keep], keep.nonzero(as_tuple=True)[0]


def _grouped_topk(scores: Tensor, groups: Tensor, k: int) -> Tensor:
    """Indices keeping the ``k`` best of each group (groups in increasing id, see the module docstring)."""
    pieces = []
    for group in groups.unique():
        members = torch.where(groups == group)[0]
        if members.numel() > k:
            members = members[scores[members].topk(k).indices]
        pieces.append(members)
    return torch.cat(pieces) if pieces else groups.new_zeros((0,), dtype=torch.int64)


def _soft_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor | None, iou_thresh: float, sigma: float, min_score: float, method: str
) -> tuple[Tensor, Tensor]:
    """Soft-NMS over all boxes, or within each label; ``(keep, decayed scores)`` by decreasing score."""
    if labels is None:
        return soft_nms(boxes, scores, iou_thresh, sigma, min_score, method)
    kept, decayed = [], []
    for label in labels.unique():
        members = torch.where(labels == label)[0]
        keep, values = soft_nms(boxes[members], scores[members], iou_thresh, sigma, min_score, method)
        kept.append(members[keep])
        decayed.append(values)
    if not kept:
        return labels.new_zeros((0,), dtype=torch.int64), scores[:0]
    keep, values = torch.cat(kept), torch.cat(decayed)
    order = torch.argsort(values, descending=True, stable=True)
    return keep[order], values[order]


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    *,
    score_thresh: float = 0.0,
    thresh_inclusive: bool = False,
    multi_label: bool = True,
    pre_nms_topk: int | None = None,
    topk_per: str = "image",
    levels: Tensor | None = None,
    min_size: float = 0.0,
    nms_thresh: float = 0.5,
    nms_method: str = "hard",
    class_agnostic_nms: bool = False,
    nms_class_offset: float | None = None,
    soft_nms_method: str = "linear",
    soft_nms_sigma: float = 0.5,
    soft_nms_min_score: float = 0.001,
    detections_per_img: int | None = None,
) -> Selection:
    """Threshold, pre-NMS top-k, NMS and cap on the scored boxes of one image (module docstring).

    Args:
        boxes: ``[N, 4]`` xyxy pixels, or ``[N, C, 4]`` one box per class (R-CNN's box head).
        scores: ``[N]`` one score per box, or ``[N, C]`` class scores (background excluded).
        labels: ``[N]`` int64 class (NMS group) of each box, with ``[N]`` scores; None: all 0.
        score_thresh: candidates need ``score > score_thresh``.
        thresh_inclusive: ``score >= score_thresh`` instead (the RPN's rule).
        multi_label: with ``[N, C]`` scores, every class above the threshold is a candidate;
            False: only each box's best class.
        pre_nms_topk: candidates kept per ``topk_per`` group before NMS; None: all.
        topk_per: ``"image"``, ``"class"`` or ``"level"``.
        levels: ``[N]`` int64 feature level of each box, for ``topk_per="level"``.
        min_size: drop boxes narrower or lower than this (pixels); 0 keeps every box.
        nms_thresh: IoU above which NMS suppresses (and linear Soft-NMS decays) a box.
        nms_method: ``"hard"``, ``"soft"`` or ``"none"``.
        class_agnostic_nms: NMS over all classes at once instead of within each class.
        nms_class_offset: hard per-class NMS as torchvision's and ultralytics' trick: every box
            shifted by ``label * nms_class_offset`` pixels and one NMS over all (ultralytics:
            7680), so that the IoUs round as theirs; None: exact per-class NMS.
        soft_nms_method: ``"linear"`` or ``"gaussian"`` decay.
        soft_nms_sigma: width of the gaussian decay.
        soft_nms_min_score: Soft-NMS drops boxes whose decayed score falls below this.
        detections_per_img: the cap after NMS; None: no cap.

    Returns:
        A :class:`Selection` (boxes, scores, labels, indices), by decreasing score.
    """
    _check_arguments(boxes, scores, labels, levels, topk_per, nms_method)
    device = scores.device
    dense_per_class = scores.dim() == 2 and multi_label and topk_per == "class" and pre_nms_topk is not None
    if dense_per_class:
        box_index, kept_scores, kept_labels = _dense_per_class_topk(
            scores, pre_nms_topk, score_thresh, thresh_inclusive
        )
    elif scores.dim() == 1:
        box_index = torch.where(_above(scores, score_thresh, thresh_inclusive))[0]
        kept_scores = scores[box_index]
        kept_labels = (
            labels[box_index] if labels is not None else torch.zeros_like(box_index, dtype=torch.int64, device=device)
        )
    elif multi_label:
        box_index, kept_labels = _above(scores, score_thresh, thresh_inclusive).nonzero(as_tuple=True)
        kept_scores = scores[box_index, kept_labels]
    else:
        best_scores, best_labels = scores.max(1)
        box_index = _above(best_scores, score_thresh, thresh_inclusive).nonzero(as_tuple=True)[0]
        kept_scores, kept_labels = best_scores[box_index], best_labels[box_index]

    if pre_nms_topk is not None and not dense_per_class:
        if topk_per == "image":
            if kept_scores.numel() > pre_nms_topk:
                kept_scores, top = kept_scores.topk(pre_nms_topk)
                box_index, kept_labels = box_index[top], kept_labels[top]
        else:
            groups = kept_labels if topk_per == "class" else levels[box_index]
            top = _grouped_topk(kept_scores, groups, pre_nms_topk)
            box_index, kept_scores, kept_labels = box_index[top], kept_scores[top], kept_labels[top]

    kept_boxes = boxes[box_index, kept_labels] if boxes.dim() == 3 else boxes[box_index]
    if min_size > 0:
        big = remove_small_boxes(kept_boxes, min_size)
        box_index, kept_boxes = box_index[big], kept_boxes[big]
        kept_scores, kept_labels = kept_scores[big], kept_labels[big]

    if nms_method == "hard":
        if class_agnostic_nms:
            keep = nms(kept_boxes, kept_scores, nms_thresh)
        elif nms_class_offset is not None:
            shift = kept_labels[:, None].to(kept_boxes.dtype) * nms_class_offset
            keep = nms(kept_boxes + shift, kept_scores, nms_thresh)
        else:
            keep = batched_nms(kept_boxes, kept_scores, kept_labels, nms_thresh)
    elif nms_method == "soft":
        groups = None if class_agnostic_nms else kept_labels
        keep, decayed = _soft_nms(
            kept_boxes, kept_scores, groups, nms_thresh, soft_nms_sigma, soft_nms_min_score, soft_nms_method
        )
        kept_scores = kept_scores.clone()
        kept_scores[keep] = decayed
    else:
        keep = torch.argsort(kept_scores, descending=True, stable=True)
    if detections_per_img is not None:
        keep = keep[:detections_per_img]
    return Selection(kept_boxes[keep], kept_scores[keep], kept_labels[keep], box_index[keep])


def topk_per_level(scores: Tensor, num_per_level: Sequence[int], k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` highest scores of each level, for every image of a batch at once.

    Args:
        scores: ``[B, N]`` scores (or logits) of every anchor, levels one after the other.
        num_per_level: anchors of each level (they sum to ``N``).
        k: candidates kept per level (fewer on a level with fewer anchors).

    Returns:
        ``(indices, levels)``, each ``[B, M]`` int64: indices into ``N`` (level by level, each by
        decreasing score) and the level of each.
    """
    top_indices, top_levels = [], []
    offset = 0
    for level, level_scores in enumerate(scores.split(list(num_per_level), dim=1)):
        count = min(k, level_scores.shape[1])
        indices = level_scores.topk(count, dim=1).indices
        top_indices.append(indices + offset)
        top_levels.append(torch.full_like(indices, level))
        offset += level_scores.shape[1]
    return torch.cat(top_indices, dim=1), torch.cat(top_levels, dim=1)
