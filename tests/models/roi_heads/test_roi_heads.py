"""RoI heads, box head and mask head: equal to torchvision's RoIHeads / TwoMLPHead / FastRCNNPredictor /
MaskRCNNHeads / MaskRCNNPredictor and paste_masks_in_image."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TorchvisionPredictor
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TorchvisionTwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads as TorchvisionRoIHeads
from torchvision.models.detection.roi_heads import paste_masks_in_image as torchvision_paste
from torchvision.ops import MultiScaleRoIAlign as TorchvisionMultiScaleRoIAlign

from detkit.models.roi_heads import FastRCNNPredictor, MaskHead, RoIHeads, TwoMLPHead, paste_masks_in_image
from detkit.ops import MultiScaleRoIAlign

NUM_CLASSES = 4  # object classes; torchvision's predictor has 5 outputs
CHANNELS = 8
LEVELS = ["p2", "p3"]


def _pair(with_mask: bool, **thresholds):
    torch.manual_seed(0)
    their_box_head = TorchvisionTwoMLPHead(CHANNELS * 7 * 7, 32)
    their_predictor = TorchvisionPredictor(32, NUM_CLASSES + 1)
    with torch.no_grad():
        their_predictor.cls_score.weight.mul_(10)  # spread the scores
    their_mask_head = MaskRCNNHeads(CHANNELS, [16, 16], 1) if with_mask else None
    their_mask_predictor = MaskRCNNPredictor(16, 16, NUM_CLASSES + 1) if with_mask else None
    theirs = TorchvisionRoIHeads(
        TorchvisionMultiScaleRoIAlign(LEVELS, 7, 2), their_box_head, their_predictor,
        0.5, 0.5, 32, 0.25, None, thresholds.get("score_thresh", 0.0), 0.5, 50,
        mask_roi_pool=TorchvisionMultiScaleRoIAlign(LEVELS, 14, 2) if with_mask else None,
        mask_head=their_mask_head, mask_predictor=their_mask_predictor,
    )
    box_head = TwoMLPHead(CHANNELS, 7, 32)
    box_head.load_state_dict(their_box_head.state_dict())
    predictor = FastRCNNPredictor(32, NUM_CLASSES)
    predictor.load_state_dict(their_predictor.state_dict())
    mask_head = None
    if with_mask:
        mask_head = MaskHead(CHANNELS, NUM_CLASSES, conv_channels=(16, 16), deconv_channels=16)
        state = {f"convs.{k}": v for k, v in their_mask_head.state_dict().items()}
        state["deconv.weight"] = their_mask_predictor.conv5_mask.weight
        state["deconv.bias"] = their_mask_predictor.conv5_mask.bias
        state["mask_logits.weight"] = their_mask_predictor.mask_fcn_logits.weight[1:]
        state["mask_logits.bias"] = their_mask_predictor.mask_fcn_logits.bias[1:]
        mask_head.load_state_dict(state)
    ours = RoIHeads(
        MultiScaleRoIAlign(LEVELS, 7, 2), box_head, predictor, NUM_CLASSES, batch_size_per_image=32,
        score_thresh=thresholds.get("score_thresh", 0.0), detections_per_img=50,
        mask_pooler=MultiScaleRoIAlign(LEVELS, 14, 2) if with_mask else None, mask_head=mask_head,
    )
    return ours, theirs


def _inputs():
    generator = torch.Generator().manual_seed(2)
    image_sizes = [(128, 120), (100, 128)]
    features = OrderedDict(
        [("p2", torch.randn(2, CHANNELS, 32, 32, generator=generator)),
         ("p3", torch.randn(2, CHANNELS, 16, 16, generator=generator))]
    )
    proposals = []
    for height, width in image_sizes:
        corner = torch.rand(60, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7])
        side = torch.rand(60, 2, generator=generator) * 60 + 4
        boxes = torch.cat([corner, corner + side], 1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(max=width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(max=height)
        proposals.append(boxes)
    targets = []
    for index, (height, width) in enumerate(image_sizes):
        boxes = torch.tensor([[10.0, 15.0, 60.0, 80.0], [50.0, 40.0, 110.0, 95.0]])
        masks = torch.zeros(2, height, width, dtype=torch.uint8)
        masks[0, 20:70, 12:50] = 1
        masks[1, 45:90, 60:100] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor([index, 3]), "masks": masks})
    return features, proposals, image_sizes, targets


@pytest.mark.parametrize("with_mask", [False, True])
def test_detections_equal_torchvision(with_mask):
    ours, theirs = _pair(with_mask)
    ours.eval()
    theirs.eval()
    features, proposals, image_sizes, _ = _inputs()
    with torch.no_grad():
        detections, losses = ours(features, proposals, image_sizes)
        their_detections, _ = theirs(features, proposals, image_sizes)
    assert losses == {}
    for our, their in zip(detections, their_detections):
        assert our["boxes"].shape[0] > 20
        torch.testing.assert_close(our["labels"], their["labels"] - 1, rtol=0, atol=0)
        torch.testing.assert_close(our["scores"], their["scores"], rtol=0, atol=0)
        torch.testing.assert_close(our["boxes"], their["boxes"], rtol=0, atol=0)
        if with_mask:
            torch.testing.assert_close(our["masks"], their["masks"], rtol=0, atol=0)


@pytest.mark.parametrize("with_mask", [False, True])
def test_losses_equal_torchvision(with_mask):
    ours, theirs = _pair(with_mask)
    features, proposals, image_sizes, targets = _inputs()
    their_targets = [{**t, "labels": t["labels"] + 1} for t in targets]
    torch.manual_seed(7)
    _, losses = ours.train()(features, [p.clone() for p in proposals], image_sizes, targets)
    torch.manual_seed(7)
    _, their_losses = theirs.train()(features, [p.clone() for p in proposals], image_sizes, their_targets)
    expected = {"loss_classifier", "loss_box_reg"} | ({"loss_mask"} if with_mask else set())
    assert set(losses) == set(their_losses) == expected
    for name in their_losses:
        torch.testing.assert_close(losses[name], their_losses[name], rtol=1e-6, atol=0, msg=name)


def test_image_without_objects_gives_finite_losses():
    ours, _ = _pair(with_mask=True)
    features, proposals, image_sizes, targets = _inputs()
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
                  "masks": torch.zeros((0, 100, 128), dtype=torch.uint8)}
    _, losses = ours.train()(features, proposals, image_sizes, targets)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    sum(losses.values()).backward()


def test_paste_masks_equal_torchvision():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(40, 28, 28, generator=generator)
    corner = torch.rand(40, 2, generator=generator) * 150
    boxes = torch.cat([corner, corner + torch.rand(40, 2, generator=generator) * 90 + 0.2], 1)
    ours = paste_masks_in_image(masks, boxes, (200, 230))
    theirs = torchvision_paste(masks[:, None], boxes, (200, 230))[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)
    assert ((ours > 0.5) == (theirs > 0.5)).all()
    assert paste_masks_in_image(masks[:0], boxes[:0], (20, 30)).shape == (0, 20, 30)


def test_constructor_errors():
    pooler = MultiScaleRoIAlign(LEVELS, 7, 2)
    with pytest.raises(ValueError, match="both mask_pooler and mask_head"):
        RoIHeads(pooler, TwoMLPHead(CHANNELS, 7, 32), FastRCNNPredictor(32, 2), 2, mask_pooler=pooler)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        FastRCNNPredictor(32, 0)
