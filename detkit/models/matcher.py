"""Assign each anchor (or proposal) at most one ground-truth box from a quality matrix (usually IoU).

Both matchers take ``match_quality_matrix`` ``[num_gt, num_anchors]`` and return ``[num_anchors]``
int64: a gt index in ``[0, num_gt)``, or a negative code. Semantics follow torchvision's
``det_utils.Matcher`` and ``det_utils.SSDMatcher`` (same results, ties included), except that an
image with no gt boxes is valid here: every anchor is then ``BELOW_LOW_THRESHOLD`` (background),
where torchvision raises.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Matcher:
    """Threshold matching with an optional low-quality rescue (Faster R-CNN's RPN and RoI heads).

    Each anchor takes the gt it overlaps most. Its match is kept when that quality is
    ``>= high_threshold``; otherwise it becomes ``BETWEEN_THRESHOLDS`` (-2, usually ignored in the
    loss) when ``>= low_threshold``, else ``BELOW_LOW_THRESHOLD`` (-1, background).

    With ``allow_low_quality_matches``, for every gt the anchors of highest quality with it
    (all of them when tied) get their best gt back even if below the thresholds, so that every gt
    has at least one anchor (Faster R-CNN paper, sec. 3.1.2, condition (i)). Note the restored
    match is the anchor's own best gt, which may differ from the gt that selected it.

    Args:
        high_threshold: quality at or above which a match is kept.
        low_threshold: quality at or above which (and below ``high_threshold``) an anchor is
            marked ``BETWEEN_THRESHOLDS``; must be ``<= high_threshold``.
        allow_low_quality_matches: restore the best anchors of each gt as described above.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches})"
        )

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """Match anchors to gt boxes.

        Args:
            match_quality_matrix: ``[num_gt, num_anchors]`` pairwise quality (e.g. IoU in [0, 1]).

        Returns:
            ``[num_anchors]`` int64: matched gt index, ``BELOW_LOW_THRESHOLD`` (-1) or
            ``BETWEEN_THRESHOLDS`` (-2). All -1 when ``num_gt == 0``.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(
                f"match_quality_matrix must be [num_gt, num_anchors], got {list(match_quality_matrix.shape)}"
            )
        num_gt, num_anchors = match_quality_matrix.shape
        if num_gt == 0 or num_anchors == 0:
            return torch.full(
                (num_anchors,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=match_quality_matrix.device
            )

        # Best gt for each anchor (on ties torch.max picks the same index as in torchvision).
        best_quality, best_gt = match_quality_matrix.max(dim=0)
        matches = torch.where(best_quality >= self.high_threshold, best_gt, self.BETWEEN_THRESHOLDS)
        matches = torch.where(best_quality < self.low_threshold, self.BELOW_LOW_THRESHOLD, matches)

        if self.allow_low_quality_matches:
            # Anchors that reach the best quality of some gt, ties included.
            best_quality_per_gt = match_quality_matrix.max(dim=1, keepdim=True).values
            is_best_for_some_gt = (match_quality_matrix == best_quality_per_gt).any(dim=0)
            matches = torch.where(is_best_for_some_gt, best_gt, matches)
        return matches


class SSDMatcher(Matcher):
    """SSD's matching (Liu et al. 2016, sec. 2.2): a single threshold, and each gt's best anchor.

    Anchors whose best quality is ``>= threshold`` match their best gt, the others are
    ``BELOW_LOW_THRESHOLD`` (-1). Then each gt claims its single best anchor (the first one on a
    tie), overriding whatever that anchor matched; if two gts have the same best anchor, the one
    with the higher index wins (torchvision's in-place assignment gives that on CPU and leaves it
    unspecified on CUDA).

    Args:
        threshold: quality at or above which an anchor matches its best gt (0.5 in SSD).
    """

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.high_threshold})"

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """Match anchors to gt boxes.

        Args:
            match_quality_matrix: ``[num_gt, num_anchors]`` pairwise quality (e.g. IoU in [0, 1]).

        Returns:
            ``[num_anchors]`` int64: matched gt index or ``BELOW_LOW_THRESHOLD`` (-1). All -1 when
            ``num_gt == 0``.
        """
        matches = super().__call__(match_quality_matrix)
        num_gt = match_quality_matrix.shape[0]
        if num_gt == 0 or matches.numel() == 0:
            return matches
        best_anchor_per_gt = match_quality_matrix.max(dim=1).indices  # first maximum on a tie
        gt_indices = torch.arange(num_gt, dtype=torch.int64, device=matches.device)
        # On a shared best anchor the highest gt index wins: what torchvision's in-place index_put
        # gives on CPU, made deterministic on every device by scatter_reduce "amax".
        claimed = torch.full_like(matches, -1).scatter_reduce(0, best_anchor_per_gt, gt_indices, reduce="amax")
        return torch.where(claimed >= 0, claimed, matches)
