"""Matcher and SSDMatcher against torchvision's det_utils counterparts."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import Matcher as TorchvisionMatcher
from torchvision.models.detection._utils import SSDMatcher as TorchvisionSSDMatcher

from detkit.models.matcher import Matcher, SSDMatcher
from detkit.ops.boxes import box_iou


def _random_iou(num_gt: int, num_anchors: int, generator: torch.Generator) -> torch.Tensor:
    def boxes(n: int) -> torch.Tensor:
        top_left = torch.rand(n, 2, generator=generator) * 80
        return torch.cat([top_left, top_left + torch.rand(n, 2, generator=generator) * 40 + 5], dim=1)

    return box_iou(boxes(num_gt), boxes(num_anchors))


def _quantised_quality(num_gt: int, num_anchors: int, generator: torch.Generator) -> torch.Tensor:
    # Few distinct values: many ties, both between gts of one anchor and anchors of one gt.
    return torch.randint(0, 6, (num_gt, num_anchors), generator=generator).float() / 5


@pytest.mark.parametrize("allow_low_quality_matches", [False, True])
@pytest.mark.parametrize("make_quality", [_random_iou, _quantised_quality])
def test_matches_torchvision(allow_low_quality_matches, make_quality) -> None:
    generator = torch.Generator().manual_seed(1)
    ours = Matcher(0.7, 0.3, allow_low_quality_matches)
    theirs = TorchvisionMatcher(0.7, 0.3, allow_low_quality_matches)
    for num_gt, num_anchors in [(1, 50), (7, 300), (20, 40)]:
        quality = make_quality(num_gt, num_anchors, generator)
        torch.testing.assert_close(ours(quality), theirs(quality), rtol=0, atol=0)


def test_hand_worked_thresholds_and_low_quality_ties() -> None:
    quality = torch.tensor(
        [
            [0.8, 0.5, 0.1, 0.2, 0.2],  # gt 0: anchor 0 above high
            [0.1, 0.4, 0.2, 0.2, 0.2],  # gt 1: best 0.4 at anchor 1 (but anchor 1 prefers gt 0)
            [0.0, 0.0, 0.25, 0.25, 0.0],  # gt 2: tied best at anchors 2 and 3
        ]
    )
    plain = Matcher(0.7, 0.3, allow_low_quality_matches=False)(quality)
    assert plain.tolist() == [0, -2, -1, -1, -1]
    rescued = Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality)
    # anchor 1 is gt 1's best: it gets its own best gt back (0); anchors 2 and 3 both rescued,
    # each with its own best gt (2 for anchor 2 at 0.25 > 0.2; anchor 3: tie 0.25 vs 0.2 -> gt 2).
    assert rescued.tolist() == [0, 0, 2, 2, -1]


def test_ssd_matcher_matches_torchvision() -> None:
    generator = torch.Generator().manual_seed(2)
    ours, theirs = SSDMatcher(0.5), TorchvisionSSDMatcher(0.5)
    for num_gt, num_anchors in [(1, 30), (6, 400), (3, 3)]:
        quality = _random_iou(num_gt, num_anchors, generator)
        torch.testing.assert_close(ours(quality), theirs(quality), rtol=0, atol=0)


def test_ssd_matcher_forces_best_anchor_per_gt() -> None:
    quality = torch.tensor(
        [
            [0.6, 0.3, 0.0, 0.1],  # gt 0: anchor 0
            [0.7, 0.2, 0.0, 0.0],  # gt 1: also anchor 0 -> higher gt index wins
            [0.0, 0.1, 0.05, 0.1],  # gt 2: tie between anchors 1 and 3 -> first (anchor 1)
        ]
    )
    matches = SSDMatcher(0.5)(quality)
    assert matches.tolist() == [1, 2, -1, -1]
    torch.testing.assert_close(matches, TorchvisionSSDMatcher(0.5)(quality))


@pytest.mark.parametrize("matcher", [Matcher(0.7, 0.3, True), SSDMatcher(0.5)])
def test_empty_gt_gives_all_background(matcher) -> None:
    matches = matcher(torch.zeros(0, 5))
    assert matches.dtype == torch.int64 and matches.tolist() == [-1] * 5
    assert matcher(torch.zeros(3, 0)).shape == (0,)


def test_rejects_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.7)
