"""RetinaNet v1 and v2: equal to torchvision (detections and losses) with converted weights; edge cases."""

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
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

from configs.common.retinanet import retinanet
from detkit.config import InstantiationError, instantiate, load_config
from detkit.models.detectors import RetinaNet

LOSS_NAMES = {"loss_classifier": "classification", "loss_box_reg": "bbox_regression"}
SCORE_THRESH = 0.3


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return [load_image(name) for name in NAMES]


def _twins(version: int, images, frozen: bool):
    builder = retinanet_resnet50_fpn if version == 1 else retinanet_resnet50_fpn_v2
    arch = "retinanet_resnet50_fpn" if version == 1 else "retinanet_resnet50_fpn_v2"
    config = retinanet(NUM_CLASSES, version=version, min_size=MIN_SIZE, max_size=MAX_SIZE)
    return dense_twins(builder, config, arch, images, frozen=frozen, score_thresh=SCORE_THRESH)


@pytest.fixture(scope="module")
def v1_frozen(images):
    return _twins(1, images, frozen=True)


def test_v1_detections_equal_torchvision(v1_frozen, images):
    ours, _ = v1_frozen
    assert isinstance(ours, RetinaNet)
    assert_same_detections(*v1_frozen, images)


def test_v1_losses_equal_torchvision_with_an_empty_target(v1_frozen, images):
    targets = image_targets(NAMES, images)
    assert_same_losses(*v1_frozen, images, targets, LOSS_NAMES)
    losses = assert_same_losses(*v1_frozen, images, [targets[0], EMPTY_TARGET], LOSS_NAMES)
    assert all(math.isfinite(float(value.detach())) for value in losses.values())


def test_v1_trainable_batch_norm_losses_and_detections_equal_torchvision(images):
    ours, theirs = _twins(1, images, frozen=False)
    targets = image_targets(NAMES, images)
    assert_same_losses(ours, theirs, images, targets, LOSS_NAMES)  # batch statistics (and updates them)
    assert_same_detections(ours, theirs, images)  # with the updated running statistics


def test_v2_detections_and_losses_equal_torchvision(images):
    ours, theirs = _twins(2, images, frozen=True)
    assert ours.head.box_loss == "giou" and ours.neck.p6p7_from_output is False
    assert_same_detections(ours, theirs, images)
    assert_same_losses(ours, theirs, images, [EMPTY_TARGET, image_targets(NAMES, images)[1]], LOSS_NAMES)


# ------------------------------------------------------------------------------------------------
# the small shapes model: training edge cases


@pytest.fixture(scope="module")
def small_model():
    config = load_config("configs/retinanet/retinanet_r18_fpn_shapes.py").model
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


def test_batch_without_objects_has_no_box_loss(small_model):
    images, _ = _toy_batch()
    small_model.train()
    _, losses = small_model(images, [EMPTY_TARGET, EMPTY_TARGET])
    assert float(losses["loss_box_reg"].detach()) == 0.0 and float(losses["loss_classifier"].detach()) > 0
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
        assert prediction["labels"].dtype == torch.int64 and int(prediction["labels"].max()) < 3
    assert small_model.class_names == ["circle", "square", "triangle"]


def test_anchor_count_mismatch_is_an_error():
    config = retinanet(3, depth=18, min_size=96, max_size=128)
    config.head.num_anchors = 3
    with pytest.raises(InstantiationError, match="head predicts 3 anchors per cell but the anchor_generator gives"):
        instantiate(config)
