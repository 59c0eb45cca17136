"""Faster R-CNN: equal to torchvision (detections and losses) with converted weights; training edge cases."""

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
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn

from configs.common.rcnn import faster_rcnn, faster_rcnn_mobilenet_v3_fpn
from detkit.config import instantiate, load_config

NAMES = ["dog.jpg", "person.jpg"]  # 768x576 and 640x424: one batch of two sizes
# Reduced input size on both sides to keep CPU time sane (same settings for both models).
MIN_SIZE, MAX_SIZE = 256, 416
# torchvision's COCO models: 91 outputs with the background, i.e. 90 detkit classes.
NUM_CLASSES = 90


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return [load_image(name) for name in NAMES]


def _twins(builder, config, arch: str, images: list[torch.Tensor]):
    torch.manual_seed(0)
    theirs = builder(
        weights=None, weights_backbone=None, min_size=MIN_SIZE, max_size=MAX_SIZE, box_score_thresh=0.0
    )
    freeze_and_perturb_norms(theirs)
    spread_scores(theirs, images)
    config.roi_heads.score_thresh = 0.0
    return detkit_twin(theirs, arch, config), theirs


@pytest.fixture(scope="module")
def resnet50_twins(images):
    return _twins(
        fasterrcnn_resnet50_fpn, faster_rcnn(NUM_CLASSES, min_size=MIN_SIZE, max_size=MAX_SIZE),
        "fasterrcnn_resnet50_fpn", images,
    )


def _assert_same_detections(ours, theirs, images):
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        our_predictions, losses = ours(images)
        their_predictions = theirs(images)
    assert losses == {}
    for our, their, image in zip(our_predictions, their_predictions, images):
        # Many detections, most with distinct scores: a real comparison, not two boxes.
        assert our["boxes"].shape[0] > 20 and our["scores"].unique().numel() > 20
        match_detections(our, their)
        height, width = image.shape[-2:]
        assert float(our["boxes"][:, 2].max()) <= width and float(our["boxes"][:, 3].max()) <= height
        assert torch.all(our["scores"][:-1] >= our["scores"][1:])


def test_resnet50_fpn_detections_equal_torchvision(resnet50_twins, images):
    _assert_same_detections(*resnet50_twins, images)


def test_resnet50_fpn_losses_equal_torchvision(resnet50_twins, images):
    ours, theirs = resnet50_twins
    # A small RoI sample so that the RoI sampler's draws matter (as the RPN's do).
    ours.roi_heads.sampler.batch_size_per_image = 64
    theirs.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    targets = image_targets(NAMES, images)
    try:
        our_losses, their_losses = paired_losses(ours, theirs, images, targets, seed=1)
        assert set(our_losses) == set(their_losses)
        for name, value in their_losses.items():
            torch.testing.assert_close(our_losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    finally:
        ours.roi_heads.sampler.batch_size_per_image = 512
        theirs.roi_heads.fg_bg_sampler.batch_size_per_image = 512


def test_mobilenet_v3_fpn_detections_equal_torchvision(images):
    config = faster_rcnn_mobilenet_v3_fpn(NUM_CLASSES, min_size=MIN_SIZE, max_size=MAX_SIZE)
    ours, theirs = _twins(fasterrcnn_mobilenet_v3_large_fpn, config, "fasterrcnn_mobilenet_v3_large_fpn", images)
    _assert_same_detections(ours, theirs, images)


@pytest.fixture(scope="module")
def small_model():
    config = load_config("configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py").model
    config.preprocess.min_size = 96
    config.preprocess.max_size = 128
    torch.manual_seed(0)
    return instantiate(config)


def _toy_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images with bright rectangles on a dark background; their boxes as targets."""
    images, targets = [], []
    for index, (height, width) in enumerate([(96, 128), (112, 96)]):
        image = torch.full((3, height, width), 0.1)
        boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [55.0, 30.0, 90.0, 80.0]])
        for k, (x1, y1, x2, y2) in enumerate(boxes.to(torch.int64).tolist()):
            image[k % 3, y1:y2, x1:x2] = 0.9
        images.append(image)
        targets.append({"boxes": boxes, "labels": torch.tensor([index % 3, (index + 1) % 3])})
    return images, targets


def test_sgd_steps_reduce_the_loss(small_model):
    images, targets = _toy_batch()
    small_model.train()
    optimizer = torch.optim.SGD([p for p in small_model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    totals = []
    for step in range(8):
        torch.manual_seed(step)
        _, losses = small_model(images, targets)
        total = sum(losses.values())
        totals.append(float(total.detach()))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.7 * totals[0], totals


def test_image_without_objects_trains_with_finite_loss(small_model):
    images, targets = _toy_batch()
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    small_model.train()
    _, losses = small_model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert math.isfinite(float(total.detach()))
    total.backward()
    # Only negatives: no regression loss for an all-empty batch either.
    _, losses = small_model(images[1:], targets[1:])
    assert float(losses["loss_box_reg"].detach()) == 0.0 and float(losses["loss_rpn_box_reg"].detach()) == 0.0
    assert math.isfinite(float(sum(losses.values()).detach()))


def test_degenerate_box_is_an_error_naming_image_and_box(small_model):
    images, targets = _toy_batch()
    targets[1] = {"boxes": torch.tensor([[5.0, 5.0, 20.0, 30.0], [40.0, 10.0, 40.0, 50.0]]),
                  "labels": torch.tensor([0, 1])}
    small_model.train()
    with pytest.raises(ValueError, match=r"image 1.*box 1.*\[40\.0, 10\.0, 40\.0, 50\.0\]"):
        small_model(images, targets)


def test_bad_inputs_are_clear_errors(small_model):
    images, targets = _toy_batch()
    small_model.train()
    with pytest.raises(ValueError, match="needs targets"):
        small_model(images)
    with pytest.raises(ValueError, match="label 0 is 3, not below num_classes=3"):
        small_model(images, [targets[0], {**targets[1], "labels": torch.tensor([3, 0])}])
    small_model.eval()
    with pytest.raises(ValueError, match=r"image 0 must be a \[3, H, W\]"):
        small_model([torch.zeros(1, 3, 32, 32)])
    with pytest.raises(TypeError, match="floating point"):
        small_model([torch.zeros(3, 32, 32, dtype=torch.uint8)])


def test_eval_returns_boxes_on_the_input_images(small_model):
    images, _ = _toy_batch()
    small_model.eval()
    small_model.roi_heads.score_thresh = 0.0
    try:
        with torch.no_grad():
            predictions, losses = small_model(images)
    finally:
        small_model.roi_heads.score_thresh = 0.05
    assert losses == {}
    for prediction, image in zip(predictions, images):
        height, width = image.shape[-2:]
        assert prediction["boxes"].shape[0] > 0
        assert float(prediction["boxes"][:, 2].max()) <= width and float(prediction["boxes"][:, 3].max()) <= height
        assert prediction["labels"].dtype == torch.int64 and int(prediction["labels"].max()) < 3
        assert small_model.class_names == ["circle", "square", "triangle"]
