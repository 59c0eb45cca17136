"""Helpers shared by the RetinaNet and FCOS tests: torchvision twins with converted weights, comparisons."""

from __future__ import annotations

import torch
from rcnn_testing import _output_std, canonical_order, freeze_and_perturb_norms, image_targets, load_image
from torch import Tensor, nn

from detkit.config import instantiate
from detkit.models.convert import convert_torchvision_dense

NAMES = ["dog.jpg", "person.jpg"]  # 768x576 and 640x424: one batch of two sizes
# Reduced input size on both sides to keep CPU time sane (same settings for both models).
MIN_SIZE, MAX_SIZE = 256, 384
# torchvision's COCO models: 91 sigmoid classifiers (category ids), detkit's num_classes too.
NUM_CLASSES = 91
EMPTY_TARGET = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}

__all__ = [
    "EMPTY_TARGET", "MAX_SIZE", "MIN_SIZE", "NAMES", "NUM_CLASSES", "assert_same_detections", "assert_same_losses",
    "dense_twins", "image_targets", "load_image",
]  # fmt: skip


def spread_dense_scores(model: nn.Module, images: list[Tensor], logit_std: float = 2.0, delta_gain: float = 20.0) -> None:
    """Spread a torchvision dense model's class logits (std ``logit_std``, zero bias) and box outputs.

    Random weights give class logits of about -4.6 everywhere (the prior bias), scores tied to many
    digits, and box deltas of about 0 (every box its anchor); tied scores make a detection-by-detection
    comparison meaningless (their order is undefined).
    """
    logits = model.head.classification_head.cls_logits
    with torch.no_grad():
        logits.bias.zero_()
    scale = logit_std / _output_std(model, logits, images)
    with torch.no_grad():
        logits.weight.mul_(scale)
        model.head.regression_head.bbox_reg.weight.mul_(delta_gain)


def dense_twins(
    builder, config, arch: str, images: list[Tensor], *, frozen: bool, score_thresh: float
) -> tuple[nn.Module, nn.Module]:
    """A torchvision model (seeded random weights; ``frozen``: FrozenBatchNorm2d with random
    statistics, else trainable BatchNorm2d) and the detkit model of ``config`` with its converted weights."""
    torch.manual_seed(0)
    theirs = builder(
        weights=None, weights_backbone=None, min_size=MIN_SIZE, max_size=MAX_SIZE, score_thresh=score_thresh
    )
    if frozen:
        freeze_and_perturb_norms(theirs)
    spread_dense_scores(theirs, images)
    config.head.score_thresh = score_thresh
    config.backbone.norm = "frozen_bn" if frozen else "bn"
    config.backbone.frozen_stages = 0
    ours = instantiate(config)
    result = ours.load_state_dict(convert_torchvision_dense(theirs.state_dict(), arch)["model"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours, theirs


def assert_same_detections(ours: nn.Module, theirs: nn.Module, images: list[Tensor], min_count: int = 20) -> None:
    """Equal detections (labels exactly, scores within 1e-5, boxes within 1e-3 px; the order of exact
    score ties ignored), many of them, inside the input images, by decreasing score."""
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        our_predictions, losses = ours(images)
        their_predictions = theirs(images)
    assert losses == {}
    for our, their, image in zip(our_predictions, their_predictions, images):
        assert our["boxes"].shape[0] > min_count and our["scores"].unique().numel() > min_count
        assert our["boxes"].shape == their["boxes"].shape, (our["boxes"].shape, their["boxes"].shape)
        our_order, their_order = canonical_order(our), canonical_order(their)
        torch.testing.assert_close(our["labels"][our_order], their["labels"][their_order], rtol=0, atol=0)
        torch.testing.assert_close(our["scores"][our_order], their["scores"][their_order], rtol=0, atol=1e-5)
        torch.testing.assert_close(our["boxes"][our_order], their["boxes"][their_order], rtol=0, atol=1e-3)
        height, width = image.shape[-2:]
        assert float(our["boxes"][:, 2].max()) <= width and float(our["boxes"][:, 3].max()) <= height
        assert torch.all(our["scores"][:-1] >= our["scores"][1:])


def assert_same_losses(
    ours: nn.Module, theirs: nn.Module, images: list[Tensor], targets: list[dict[str, Tensor]], names: dict[str, str]
) -> dict[str, Tensor]:
    """Training losses within 1e-5 (relative); ``names`` maps detkit's loss names to torchvision's.

    Returns:
        detkit's losses.
    """
    ours.train()
    theirs.train()
    _, our_losses = ours(images, targets)
    their_losses = theirs(images, targets)  # same labels: no background index in sigmoid heads
    assert set(our_losses) == set(names) and set(their_losses) == set(names.values())
    for ours_name, their_name in names.items():
        torch.testing.assert_close(
            our_losses[ours_name], their_losses[their_name], rtol=1e-5, atol=1e-6, msg=ours_name
        )
    return our_losses
