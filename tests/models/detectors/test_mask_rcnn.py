"""Mask R-CNN: equal to torchvision (detections, masks and losses) with converted weights; edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from rcnn_testing import (
    detkit_twin,
    freeze_and_perturb_norms,
    image_targets,
    load_image,
    match_detections,
    paired_losses,
    spread_scores,
)
from torchvision.models.detection import maskrcnn_resnet50_fpn

from configs.common.rcnn import mask_rcnn
from detkit.config import instantiate, load_config

NAMES = ["dog.jpg", "person.jpg"]
MIN_SIZE, MAX_SIZE = 256, 416
NUM_CLASSES = 90
# Pasted masks agree with torchvision's to float32 rounding (~1e-6, see paste_masks_in_image), so
# a pixel within that distance of 0.5 may threshold differently: allow 1 in 100,000 pixels.
MAX_MASK_PIXEL_MISMATCH = 1e-5


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return [load_image(name) for name in NAMES]


@pytest.fixture(scope="module")
def twins(images):
    torch.manual_seed(0)
    theirs = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=MIN_SIZE, max_size=MAX_SIZE, box_score_thresh=0.0
    )
    freeze_and_perturb_norms(theirs)
    spread_scores(theirs, images)
    config = mask_rcnn(NUM_CLASSES, min_size=MIN_SIZE, max_size=MAX_SIZE)
    config.roi_heads.score_thresh = 0.0
    return detkit_twin(theirs, "maskrcnn_resnet50_fpn", config), theirs


def test_detections_and_masks_equal_torchvision(twins, images):
    ours, theirs = twins
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        our_predictions, _ = ours(images)
        their_predictions = theirs(images)
    for our, their, image in zip(our_predictions, their_predictions, images):
        assert our["boxes"].shape[0] > 20
        our_order, their_order = match_detections(our, their)
        height, width = image.shape[-2:]
        assert our["masks"].shape == (our["boxes"].shape[0], height, width)
        assert our["masks"].dtype == torch.float32
        assert 0 <= float(our["masks"].min()) and float(our["masks"].max()) <= 1
        our_binary = our["masks"][our_order] > 0.5
        their_binary = their["masks"][their_order, 0] > 0.5
        assert our_binary.any()
        mismatch = (our_binary != their_binary).float().mean().item()
        assert mismatch <= MAX_MASK_PIXEL_MISMATCH, mismatch
        torch.testing.assert_close(our["masks"][our_order], their["masks"][their_order, 0], rtol=0, atol=1e-5)


def test_losses_equal_torchvision(twins, images):
    ours, theirs = twins
    ours.roi_heads.sampler.batch_size_per_image = 64
    theirs.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    targets = image_targets(NAMES, images, with_masks=True)
    try:
        our_losses, their_losses = paired_losses(ours, theirs, images, targets, seed=1)
    finally:
        ours.roi_heads.sampler.batch_size_per_image = 512
        theirs.roi_heads.fg_bg_sampler.batch_size_per_image = 512
    assert set(our_losses) == set(their_losses) and "loss_mask" in our_losses
    for name, value in their_losses.items():
        torch.testing.assert_close(our_losses[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def small_model():
    config = load_config("configs/mask_rcnn/mask_rcnn_r18_fpn_1x_shapes.py").model
    config.preprocess.min_size = 96
    config.preprocess.max_size = 128
    torch.manual_seed(0)
    return instantiate(config)


def _toy_batch():
    images, targets = [], []
    for height, width in [(96, 128), (112, 96)]:
        image = torch.full((3, height, width), 0.1)
        boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [55.0, 30.0, 90.0, 80.0]])
        masks = torch.zeros(2, height, width, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.to(torch.int64).tolist()):
            image[k, y1:y2, x1:x2] = 0.9
            masks[k, y1:y2, x1:x2] = 1
        images.append(image)
        targets.append({"boxes": boxes, "labels": torch.tensor([0, 1]), "masks": masks})
    return images, targets


def test_trains_with_an_empty_image_and_predicts_full_size_masks(small_model):
    images, targets = _toy_batch()
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
                  "masks": torch.zeros((0, 112, 96), dtype=torch.uint8)}
    small_model.train()
    _, losses = small_model(images, targets)
    assert "loss_mask" in losses
    total = sum(losses.values())
    assert math.isfinite(float(total.detach()))
    total.backward()
    _, losses = small_model(images[1:], targets[1:])  # no objects at all: mask loss 0, finite
    assert float(losses["loss_mask"].detach()) == 0.0

    small_model.eval()
    small_model.roi_heads.score_thresh = 0.0
    try:
        with torch.no_grad():
            predictions, _ = small_model(images)
    finally:
        small_model.roi_heads.score_thresh = 0.05
    for prediction, image in zip(predictions, images):
        assert prediction["masks"].shape == (prediction["boxes"].shape[0], *image.shape[-2:])


def test_missing_masks_are_an_error(small_model):
    images, targets = _toy_batch()
    del targets[0]["masks"]
    small_model.train()
    with pytest.raises(KeyError, match="image 0.*masks"):
        small_model(images, targets)
