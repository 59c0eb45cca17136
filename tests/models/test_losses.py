"""Losses against torchvision.ops / torch.nn.functional and torchvision SSD's loss, plus hand-worked cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder
from torchvision.models.detection.ssd import SSD as TorchvisionSSD

from detkit.models.box_coder import BoxCoder
from detkit.models.losses import (
    cross_entropy_with_hard_negative_mining,
    giou_loss,
    l1_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
)


def _random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    top_left = torch.rand(n, 2, generator=generator) * 60
    return torch.cat([top_left, top_left + torch.rand(n, 2, generator=generator) * 40 + 1], dim=1)


@pytest.mark.parametrize("beta", [1.0, 1.0 / 9, 0.0])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_smooth_l1_matches_torch(beta, reduction) -> None:
    generator = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(50, 4, generator=generator), torch.randn(50, 4, generator=generator)
    expected = F.smooth_l1_loss(prediction, target, reduction=reduction, beta=beta)
    torch.testing.assert_close(smooth_l1_loss(prediction, target, beta, reduction), expected)


def test_smooth_l1_and_l1_hand_worked() -> None:
    prediction, target = torch.tensor([0.5, -2.0, 0.0]), torch.zeros(3)
    torch.testing.assert_close(smooth_l1_loss(prediction, target, beta=1.0), torch.tensor([0.125, 1.5, 0.0]))
    torch.testing.assert_close(smooth_l1_loss(prediction, target, beta=0.0), torch.tensor([0.5, 2.0, 0.0]))
    torch.testing.assert_close(l1_loss(prediction, target, "sum"), torch.tensor(2.5))
    # beta = 0 has a finite gradient (L1's sign), not NaN
    prediction.requires_grad_(True)
    smooth_l1_loss(prediction, target, beta=0.0, reduction="sum").backward()
    assert torch.isfinite(prediction.grad).all()
    assert smooth_l1_loss(torch.zeros(0, 4), torch.zeros(0, 4), reduction="mean").item() == 0.0
    with pytest.raises(ValueError, match="reduction"):
        l1_loss(prediction, target, "avg")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_giou_loss_matches_torchvision(reduction) -> None:
    generator = torch.Generator().manual_seed(1)
    boxes1 = _random_boxes(64, generator).requires_grad_(True)
    boxes2 = _random_boxes(64, generator)  # many pairs do not overlap
    ours = giou_loss(boxes1, boxes2, reduction)
    theirs = torchvision.ops.generalized_box_iou_loss(boxes1, boxes2, reduction=reduction)
    torch.testing.assert_close(ours, theirs)
    (grad_ours,) = torch.autograd.grad(ours.sum(), boxes1)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), boxes1)
    torch.testing.assert_close(grad_ours, grad_theirs)


def test_giou_loss_hand_worked() -> None:
    box = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert giou_loss(box, box).item() == pytest.approx(0.0, abs=1e-6)
    # Disjoint unit boxes 1 px apart: IoU 0, enclosing 3 x 1, union 2 -> GIoU = -1/3, loss 4/3.
    loss = giou_loss(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[2.0, 0, 3, 1]]))
    torch.testing.assert_close(loss, torch.tensor([4 / 3]))
    assert giou_loss(torch.zeros(0, 4), torch.zeros(0, 4), "mean").item() == 0.0


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1, 2.0), (0.5, 0.0), (0.75, 1.5)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_sigmoid_focal_loss_matches_torchvision(alpha, gamma, reduction) -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(30, 5, generator=generator) * 3
    targets = (torch.rand(30, 5, generator=generator) > 0.8).float()
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha, gamma, reduction),
        torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction),
    )
    with pytest.raises(ValueError, match="alpha"):
        sigmoid_focal_loss(logits, targets, alpha=2.0)


def test_hard_negative_mining_hand_worked() -> None:
    # Two classes (0 background). With logits [0, x], the background loss log(1 + e^x) grows with x.
    x = torch.tensor(
        [
            [5.0, 1.0, 4.0, -2.0, 3.0, 0.0, 9.0],  # image 0: one positive (anchor 0), anchor 6 ignored
            [9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0],  # image 1: no positives -> no negatives either
        ]
    )
    logits = torch.stack([torch.zeros_like(x), x], dim=-1)
    labels = torch.tensor([[1, 0, 0, 0, 0, 0, -1], [0, 0, 0, 0, 0, 0, 0]])
    loss_sum, num_positives = cross_entropy_with_hard_negative_mining(logits, labels, neg_pos_ratio=3)
    # Negatives ranked by loss: anchor 2 (x=4), 4 (x=3), 1 (x=1), 5, 3 -> keep anchors 2, 4, 1.
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = softplus(-5.0) + softplus(4.0) + softplus(3.0) + softplus(1.0)
    assert loss_sum.item() == pytest.approx(expected, rel=1e-6)
    assert num_positives.dtype == torch.int64 and num_positives.item() == 1


def test_hard_negative_mining_never_counts_positives_as_negatives() -> None:
    # 2 positives and 1 negative: 3 * 2 = 6 wanted, only the one negative exists.
    logits = torch.tensor([[[0.0, 1.0], [0.0, 2.0], [0.0, 0.5]]])
    labels = torch.tensor([[1, 1, 0]])
    loss_sum, num_positives = cross_entropy_with_hard_negative_mining(logits, labels)
    expected = F.cross_entropy(logits[0], labels[0], reduction="sum")
    torch.testing.assert_close(loss_sum, expected)
    assert num_positives.item() == 2


def test_ssd_loss_matches_torchvision_compute_loss() -> None:
    """Our pieces (BoxCoder, smooth_l1_loss, mined CE) reproduce torchvision SSD's loss dict."""
    generator = torch.Generator().manual_seed(3)
    num_images, num_anchors, num_classes = 3, 300, 6  # class 0 is the background
    anchors = [_random_boxes(num_anchors, generator) for _ in range(num_images)]
    targets, matched_idxs = [], []
    for num_gt in (4, 1, 0):
        gt_labels = torch.randint(1, num_classes, (num_gt,), generator=generator)
        targets.append({"boxes": _random_boxes(num_gt, generator), "labels": gt_labels})
        matched = torch.randint(0, max(num_gt, 1), (num_anchors,), generator=generator)
        keep = torch.rand(num_anchors, generator=generator) < 0.1
        matched_idxs.append(torch.where(keep & (num_gt > 0), matched, torch.full_like(matched, -1)))
    head_outputs = {
        "cls_logits": torch.randn(num_images, num_anchors, num_classes, generator=generator),
        "bbox_regression": torch.randn(num_images, num_anchors, 4, generator=generator),
    }
    torchvision_ssd = SimpleNamespace(box_coder=TorchvisionBoxCoder((10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    expected = TorchvisionSSD.compute_loss(torchvision_ssd, targets, head_outputs, anchors, matched_idxs)

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    labels, box_loss = [], torch.zeros(())
    regressions = head_outputs["bbox_regression"]
    for target, anchors_per_image, matched, regression in zip(targets, anchors, matched_idxs, regressions):
        foreground = matched >= 0
        labels_per_image = torch.zeros_like(matched)  # 0: background
        labels_per_image[foreground] = target["labels"][matched[foreground]]
        labels.append(labels_per_image)
        deltas = coder.encode(target["boxes"][matched[foreground]], anchors_per_image[foreground])
        box_loss = box_loss + smooth_l1_loss(regression[foreground], deltas, beta=1.0, reduction="sum")
    loss_sum, num_positives = cross_entropy_with_hard_negative_mining(head_outputs["cls_logits"], torch.stack(labels))
    normaliser = num_positives.clamp(min=1)
    torch.testing.assert_close(loss_sum / normaliser, expected["classification"])
    torch.testing.assert_close(box_loss / normaliser, expected["bbox_regression"])
