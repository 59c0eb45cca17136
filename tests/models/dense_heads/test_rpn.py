"""RPN: proposals and losses equal to torchvision's RegionProposalNetwork for the same head weights."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TorchvisionImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead as TorchvisionRPNHead

from detkit.models.anchors import AnchorGenerator
from detkit.models.dense_heads import RPN, RPNHead
from detkit.structures import ImageList

SIZES = ((16,), (32,), (64,))
RATIOS = ((0.5, 1.0, 2.0),) * 3
LEVELS = ("p3", "p4", "p5")


def _pair(pre_nms=(300, 120), post_nms=(200, 50), score_thresh=0.0):
    torch.manual_seed(0)
    their_head = TorchvisionRPNHead(8, 3)
    theirs = RegionProposalNetwork(
        TorchvisionAnchorGenerator(SIZES, RATIOS), their_head, 0.7, 0.3, 64, 0.5,
        dict(training=pre_nms[0], testing=pre_nms[1]), dict(training=post_nms[0], testing=post_nms[1]), 0.7,
        score_thresh=score_thresh,
    )
    head = RPNHead(8, 3)
    head.load_state_dict(their_head.state_dict())
    ours = RPN(
        head, AnchorGenerator(SIZES, RATIOS), in_levels=LEVELS, batch_size_per_image=64,
        pre_nms_topk_train=pre_nms[0], pre_nms_topk_test=pre_nms[1],
        post_nms_topk_train=post_nms[0], post_nms_topk_test=post_nms[1], score_thresh=score_thresh,
    )
    return ours, theirs


def _inputs():
    generator = torch.Generator().manual_seed(1)
    batch = torch.zeros(2, 3, 128, 160)
    image_sizes = [(128, 150), (100, 160)]
    features = OrderedDict(
        (name, torch.randn(2, 8, 128 // stride, 160 // stride, generator=generator))
        for name, stride in zip(LEVELS, (8, 16, 32))
    )
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 10.0, 140.0, 50.0]]), "labels": torch.tensor([0, 1])},
        {"boxes": torch.tensor([[30.0, 30.0, 50.0, 45.0]]), "labels": torch.tensor([2])},
    ]
    return batch, image_sizes, features, targets


@pytest.mark.parametrize("training", [False, True])
def test_proposals_and_losses_equal_torchvision(training):
    ours, theirs = _pair()
    ours.train(training)
    theirs.train(training)
    batch, image_sizes, features, targets = _inputs()
    torch.manual_seed(5)
    proposals, losses = ours.propose(ImageList(batch, image_sizes), features, targets if training else None)
    torch.manual_seed(5)
    their_proposals, their_losses = theirs(
        TorchvisionImageList(batch, image_sizes), features, targets if training else None
    )
    for our, their in zip(proposals, their_proposals):
        assert our.shape[0] > 10
        torch.testing.assert_close(our, their, rtol=0, atol=0)
    assert set(losses) == set(their_losses)
    for name in their_losses:
        torch.testing.assert_close(losses[name], their_losses[name], rtol=1e-6, atol=0)


def test_train_and_test_numbers_are_separate():
    ours, _ = _pair(pre_nms=(1000, 5), post_nms=(1000, 7))
    batch, image_sizes, features, targets = _inputs()
    ours.eval()
    proposals, losses = ours.propose(ImageList(batch, image_sizes), features)
    assert losses == {}
    # Test: at most 5 candidates per level (15), at most 7 after NMS.
    assert all(p.shape[0] <= 7 for p in proposals)
    ours.train()
    proposals, losses = ours.propose(ImageList(batch, image_sizes), features, targets)
    assert all(p.shape[0] > 7 for p in proposals)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())


def test_proposals_lie_inside_their_image_and_carry_no_gradient():
    ours, _ = _pair()
    ours.eval()
    batch, image_sizes, features, _ = _inputs()
    proposals, _ = ours.propose(ImageList(batch, image_sizes), features)
    for boxes, (height, width) in zip(proposals, image_sizes):
        assert not boxes.requires_grad
        assert float(boxes[:, 0::2].max()) <= width and float(boxes[:, 1::2].max()) <= height
        assert bool((boxes[:, 2:] - boxes[:, :2] >= 1e-3).all())


def test_images_without_objects_give_finite_losses():
    ours, _ = _pair()
    ours.train()
    batch, image_sizes, features, _ = _inputs()
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}] * 2
    _, losses = ours.propose(ImageList(batch, image_sizes), features, empty)
    assert float(losses["loss_rpn_box_reg"].detach()) == 0.0
    assert math.isfinite(float(losses["loss_objectness"].detach()))


def test_missing_level_and_missing_targets_are_errors():
    ours, _ = _pair()
    batch, image_sizes, features, _ = _inputs()
    del features["p4"]
    with pytest.raises(KeyError, match="p4"):
        ours.propose(ImageList(batch, image_sizes), features)
    _, _, features, _ = _inputs()
    ours.train()
    with pytest.raises(ValueError, match="targets are required"):
        ours.propose(ImageList(batch, image_sizes), features)
