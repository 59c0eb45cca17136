"""FCOS: equal to torchvision (detections and losses) with converted weights; edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from dense_testing import (
    EMPTY_TARGET,
    MAX_SIZE,
    MIN_SIZE,
    NAMES,
    NUM_CLASSES,
    assert_same_detections,
    assert_same_losses,
    dense_twins,
    image_targets,
    load_image,
)
from torchvision.models.detection import fcos_resnet50_fpn

from configs.common.fcos import fcos
from detkit.config import instantiate, load_config
from detkit.models.detectors import FCOS

LOSS_NAMES = {"loss_classifier": "classification", "loss_box_reg": "bbox_regression",
              "loss_centerness": "bbox_ctrness"}
SCORE_THRESH = 0.3


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return [load_image(name) for name in NAMES]


def _twins(images, frozen: bool):
    config = fcos(NUM_CLASSES, min_size=MIN_SIZE, max_size=MAX_SIZE)
    return dense_twins(fcos_resnet50_fpn, config, "fcos_resnet50_fpn", images, frozen=frozen, score_thresh=SCORE_THRESH)


@pytest.fixture(scope="module")
def frozen_twins(images):
    return _twins(images, frozen=True)


def test_detections_equal_torchvision(frozen_twins, images):
    assert isinstance(frozen_twins[0], FCOS)
    assert_same_detections(*frozen_twins, images)


def test_losses_equal_torchvision_with_an_empty_target(frozen_twins, images):
    targets = image_targets(NAMES, images)
    losses = assert_same_losses(*frozen_twins, images, targets, LOSS_NAMES)
    assert float(losses["loss_box_reg"].detach()) > 0  # foreground points exist
    assert_same_losses(*frozen_twins, images, [EMPTY_TARGET, targets[1]], LOSS_NAMES)


def test_trainable_batch_norm_losses_and_detections_equal_torchvision(images):
    ours, theirs = _twins(images, frozen=False)
    assert_same_losses(ours, theirs, images, image_targets(NAMES, images), LOSS_NAMES)
    assert_same_detections(ours, theirs, images)


# ------------------------------------------------------------------------------------------------
# the small shapes model: training edge cases


@pytest.fixture(scope="module")
def small_model():
    config = load_config("configs/fcos/fcos_r18_fpn_shapes.py").model
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


def test_adam_steps_reduce_the_loss(small_model):
    images, targets = _toy_batch()
    small_model.train()
    optimizer = torch.optim.Adam([p for p in small_model.parameters() if p.requires_grad], lr=1e-3)
    totals = []
    for _ in range(8):
        _, losses = small_model(images, targets)
        total = sum(losses.values())
        totals.append(float(total.detach()))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.7 * totals[0], totals


def test_batch_without_objects_has_only_a_classification_loss(small_model):
    images, _ = _toy_batch()
    small_model.train()
    _, losses = small_model(images, [EMPTY_TARGET, EMPTY_TARGET])
    assert float(losses["loss_box_reg"].detach()) == 0.0 and float(losses["loss_centerness"].detach()) == 0.0
    assert float(losses["loss_classifier"].detach()) > 0
    sum(losses.values()).backward()


def test_eval_returns_boxes_on_the_input_images(small_model):
    images, _ = _toy_batch()
    small_model.eval()
    small_model.head.score_thresh = 0.0
    try:
        with torch.no_grad():
            predictions, losses = small_model(images)
    finally:
        small_model.head.score_thresh = 0.05
    assert losses == {}
    for prediction, image in zip(predictions, images):
        height, width = image.shape[-2:]
        assert 0 < prediction["boxes"].shape[0] <= small_model.head.detections_per_img
        assert float(prediction["boxes"][:, 2].max()) <= width and float(prediction["boxes"][:, 3].max()) <= height
    assert small_model.class_names == ["circle", "square", "triangle"]
