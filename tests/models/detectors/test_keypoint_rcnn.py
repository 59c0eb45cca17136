"""Keypoint R-CNN: equal to torchvision (detections, keypoints, keypoint scores and losses) with
converted weights, frozen and trainable batch norm; images without objects."""

from __future__ import annotations

import math

import pytest
import torch
from rcnn_testing import IMAGE_OBJECTS, detkit_twin, freeze_and_perturb_norms, load_image, match_detections, \
    paired_losses, spread_scores
from torchvision.models.detection import keypointrcnn_resnet50_fpn

from configs.common.rcnn import keypoint_rcnn
from detkit.models.detectors import KeypointRCNN

NAMES = ["dog.jpg", "person.jpg"]
MIN_SIZE, MAX_SIZE = 320, 416
NUM_KEYPOINTS = 17
# More classes than torchvision's one person class: with random weights a single class keeps only
# a couple of boxes through NMS; 20 classes give dozens of detections to compare.
NUM_CLASSES = 20


def _keypoint_targets(images: list[torch.Tensor], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Boxes and labels of the test images, with random keypoints: most
    inside their box, some outside it, some unlabelled (visibility 0), some occluded (1)."""
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for name in NAMES:
        boxes = torch.tensor(IMAGE_OBJECTS[name][0])
        low, size = boxes[:, None, :2], (boxes[:, None, 2:] - boxes[:, None, :2])
        points = low + size * (torch.rand((len(boxes), NUM_KEYPOINTS, 2), generator=generator) * 1.2 - 0.1)
        visibility = torch.randint(0, 3, (len(boxes), NUM_KEYPOINTS, 1), generator=generator).float()
        points[0, 0] = boxes[0, 2:]  # a point on the box's right / bottom edge: the last cell
        visibility[0, 0] = 2
        labels = torch.tensor(IMAGE_OBJECTS[name][1]) % NUM_CLASSES
        targets.append({"boxes": boxes, "labels": labels,
                        "keypoints": torch.cat([points, visibility], dim=2)})
    return targets


def _twins(images: list[torch.Tensor], frozen_norms: bool):
    torch.manual_seed(0)
    theirs = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1,
                                       min_size=MIN_SIZE, max_size=MAX_SIZE, box_score_thresh=0.0)
    config = keypoint_rcnn(NUM_CLASSES, min_size=MIN_SIZE, max_size=MAX_SIZE)
    config.roi_heads.score_thresh = 0.0
    if frozen_norms:
        freeze_and_perturb_norms(theirs)
    else:  # torchvision without pretrained weights: trainable BatchNorm2d, all stages trained
        config.backbone.norm = "bn"
        config.backbone.frozen_stages = 0
    spread_scores(theirs, images)
    return detkit_twin(theirs, "keypointrcnn_resnet50_fpn", config), theirs


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return [load_image(name) for name in NAMES]


@pytest.fixture(scope="module")
def frozen_twins(images):
    return _twins(images, frozen_norms=True)


def _assert_same_detections(ours, theirs, images):
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        our_predictions, _ = ours(images)
        their_predictions = theirs(images)
    for our, their in zip(our_predictions, their_predictions):
        assert our["boxes"].shape[0] > 20
        our_order, their_order = match_detections(our, their)
        assert our["keypoints"].shape == (our["boxes"].shape[0], NUM_KEYPOINTS, 3)
        torch.testing.assert_close(our["keypoints"][our_order], their["keypoints"][their_order], rtol=0, atol=1e-3)
        torch.testing.assert_close(our["keypoint_scores"][our_order], their["keypoints_scores"][their_order],
                                   rtol=0, atol=1e-5)


def test_detections_and_keypoints_equal_torchvision(frozen_twins, images):
    _assert_same_detections(*frozen_twins, images)


def _assert_same_losses(ours, theirs, images, targets):
    ours.roi_heads.sampler.batch_size_per_image = 64
    theirs.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    try:
        our_losses, their_losses = paired_losses(ours, theirs, images, targets, seed=1)
    finally:
        ours.roi_heads.sampler.batch_size_per_image = 512
        theirs.roi_heads.fg_bg_sampler.batch_size_per_image = 512
    assert set(our_losses) == set(their_losses) and "loss_keypoint" in our_losses
    for name, value in their_losses.items():
        torch.testing.assert_close(our_losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    return our_losses


def test_losses_equal_torchvision(frozen_twins, images):
    losses = _assert_same_losses(*frozen_twins, images, _keypoint_targets(images))
    assert math.isfinite(float(losses["loss_keypoint"].detach())) and float(losses["loss_keypoint"].detach()) > 0


def test_losses_equal_torchvision_with_an_image_without_objects(frozen_twins, images):
    targets = _keypoint_targets(images)
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
                  "keypoints": torch.zeros((0, NUM_KEYPOINTS, 3))}
    _assert_same_losses(*frozen_twins, images, targets)
    # no objects in the batch at all: the keypoint loss is 0 and still in the graph
    ours, theirs = frozen_twins
    our_losses = _assert_same_losses(ours, theirs, images[1:], targets[1:])
    assert float(our_losses["loss_keypoint"].detach()) == 0.0 and our_losses["loss_keypoint"].requires_grad


def test_trainable_batch_norm_equals_torchvision(images):
    ours, theirs = _twins(images, frozen_norms=False)
    _assert_same_losses(ours, theirs, images, _keypoint_targets(images))
    _assert_same_detections(ours, theirs, images)


def test_image_without_detections(frozen_twins, images):
    ours, _ = frozen_twins
    ours.eval()
    ours.roi_heads.score_thresh = 1.1  # nothing passes
    try:
        with torch.no_grad():
            predictions, _ = ours(images[:1])
    finally:
        ours.roi_heads.score_thresh = 0.0
    assert predictions[0]["keypoints"].shape == (0, NUM_KEYPOINTS, 3)
    assert predictions[0]["keypoint_scores"].shape == (0, NUM_KEYPOINTS)


def test_targets_need_keypoints_of_the_right_shape(frozen_twins, images):
    ours, _ = frozen_twins
    ours.train()
    targets = _keypoint_targets(images)
    del targets[0]["keypoints"]
    with pytest.raises(KeyError, match="image 0.*keypoints"):
        ours(images, targets)
    targets = _keypoint_targets(images)
    targets[1]["keypoints"] = targets[1]["keypoints"][:, :5]
    with pytest.raises(ValueError, match=r"image 1.*keypoints.*\[N, 17, 3\]"):
        ours(images, targets)


def test_keypoint_settings_are_checked():
    from detkit.config import instantiate

    config = keypoint_rcnn(1, depth=18, min_size=96, max_size=128, keypoint_channels=8, keypoint_convs=1)
    model = instantiate(config)
    assert isinstance(model, KeypointRCNN) and model.num_keypoints == 17 and len(model.skeleton) == 19
    config.keypoint_flip_pairs = [[0, 17]]
    with pytest.raises(Exception, match=r"keypoint_flip_pairs must be pairs of keypoint indices in \[0, 17\)"):
        instantiate(config)
    config = keypoint_rcnn(1, depth=18, keypoint_channels=8, keypoint_convs=1, keypoint_names=["a"])
    with pytest.raises(Exception, match="1 keypoint_names for the 17 keypoints"):
        instantiate(config)
