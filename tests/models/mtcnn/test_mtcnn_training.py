"""MTCNN training: sample generation, the paper's losses with OHEM, a few SGD steps per stage."""

from __future__ import annotations

import math

import pytest
import torch

from detkit.models.detectors.mtcnn import MTCNN, ONet, PNet, RNet
from detkit.models.mtcnn_training import (
    NEGATIVE, PART, POSITIVE, STAGE_LOSS_WEIGHTS, StageSamples, generate_samples, ohem_cross_entropy,
    stage_losses, train_stage,
)
from detkit.ops import box_iou

from mtcnn_testing import reference_targets


def test_samples_are_labelled_by_iou_and_encode_their_targets():
    images, targets = reference_targets()
    samples = generate_samples(images, targets, 24, 30, 10, 10, generator=torch.Generator().manual_seed(0))
    labels = samples.labels
    assert samples.crops.shape == (len(labels), 3, 24, 24)
    assert float(samples.crops.min()) >= 0 and float(samples.crops.max()) <= 1
    counts = {kind: int((labels == kind).sum()) for kind in (NEGATIVE, PART, POSITIVE)}
    assert counts[NEGATIVE] <= 3 * 30 and counts[NEGATIVE] >= 30  # every image gives negatives
    assert 0 < counts[POSITIVE] <= 2 * 10 and 0 < counts[PART] <= 2 * 10  # two images have a face
    assert torch.isfinite(samples.box_targets).all() and (samples.box_targets[labels == NEGATIVE] == 0).all()
    # Landmarks only for positives, five x then five y inside about the crop.
    assert samples.landmark_mask.sum() > 0 and not samples.landmark_mask[labels != POSITIVE].any()
    lm = samples.landmark_targets[samples.landmark_mask]
    assert float(lm.min()) > -0.5 and float(lm.max()) < 1.5


def test_sample_ious_respect_the_paper_thresholds():
    # One 40x40 face in a 100x100 image: decode each sample's crop from its box target.
    image = torch.rand(3, 100, 100, generator=torch.Generator().manual_seed(0))
    face = torch.tensor([[30.0, 20.0, 70.0, 60.0]])
    samples = generate_samples([image], [{"boxes": face}], 12, 50, 50, 50, generator=torch.Generator().manual_seed(1))
    faces = samples.labels != NEGATIVE
    t = samples.box_targets[faces]
    # t = (face - origin) / side  =>  side = (face_x2 - face_x1) / (t_x2 - t_x1), origin = face_x1 - t_x1 side
    side = (face[0, 2] - face[0, 0]) / (t[:, 2] - t[:, 0])
    origin = face[0, :2] - t[:, :2] * side[:, None]
    crops = torch.cat([origin, origin + side[:, None]], dim=1)
    iou = box_iou(crops, face)[:, 0]
    positive = samples.labels[faces] == POSITIVE
    assert (iou[positive] >= 0.65 - 1e-4).all() and (iou[~positive] >= 0.4 - 1e-4).all()
    assert (iou[~positive] < 0.65 + 1e-4).all()


def test_ohem_keeps_the_hardest_70_percent():
    logits = torch.tensor([[0.0, 5.0], [0.0, -5.0], [0.0, 0.0], [2.0, 0.0], [0.0, 1.0],
                           [0.0, 3.0], [0.0, 2.0], [1.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    labels = torch.ones(10, dtype=torch.int64)
    per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = per_sample.sort(descending=True).values[:7].mean()
    torch.testing.assert_close(ohem_cross_entropy(logits, labels, 0.7), expected)
    empty = ohem_cross_entropy(torch.zeros(0, 2, requires_grad=True), torch.zeros(0, dtype=torch.int64))
    assert float(empty.detach()) == 0 and empty.requires_grad


def test_stage_losses_use_the_paper_weights():
    assert STAGE_LOSS_WEIGHTS == {"pnet": (1.0, 0.5, 0.5), "rnet": (1.0, 0.5, 0.5), "onet": (1.0, 0.5, 1.0)}
    samples = StageSamples(
        crops=torch.zeros(3, 3, 48, 48), labels=torch.tensor([POSITIVE, NEGATIVE, PART]),
        box_targets=torch.tensor([[0.1, 0.1, 0.9, 0.9], [0, 0, 0, 0], [0.2, 0.0, 1.0, 0.8]]),
        landmark_targets=torch.full((3, 10), 0.5), landmark_mask=torch.tensor([True, False, False]),
    )
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    deltas = torch.zeros(3, 4)
    points = torch.zeros(3, 10)
    losses = stage_losses("onet", (logits, deltas, points), samples)
    box = (samples.box_targets[[0, 2]] ** 2).mean()
    torch.testing.assert_close(losses["onet_box"], 0.5 * box)
    torch.testing.assert_close(losses["onet_landmark"], torch.tensor(0.25))
    ce = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([1, 0]), reduction="none")
    torch.testing.assert_close(losses["onet_cls"], ce.sort(descending=True).values[:2].mean())
    assert set(stage_losses("pnet", (logits[:, :, None, None], deltas[:, :, None, None]), samples)) == {
        "pnet_cls", "pnet_box"}
    with pytest.raises(ValueError, match="unknown MTCNN stage"):
        stage_losses("qnet", (logits, deltas), samples)


@pytest.mark.parametrize("stage,net", [("pnet", PNet), ("rnet", RNet), ("onet", ONet)])
def test_training_a_stage_lowers_its_loss(stage, net):
    torch.manual_seed(0)
    images, targets = reference_targets()
    steps = {"pnet": 30, "rnet": 20, "onet": 12}[stage]
    history = train_stage(net(), stage, images, targets, steps=steps, lr=0.01,
                          samples_per_image=(24, 8, 8), generator=torch.Generator().manual_seed(0))
    assert all(math.isfinite(x) for x in history)
    assert sum(history[-3:]) / 3 < 0.8 * sum(history[:3]) / 3, history


def test_train_mode_forward_gives_weighted_losses_of_every_stage():
    torch.manual_seed(0)
    images, targets = reference_targets()
    model = MTCNN(train_samples=(8, 4, 4)).train()
    predictions, losses = model(images, targets)
    assert predictions == []
    assert set(losses) == {"pnet_cls", "pnet_box", "rnet_cls", "rnet_box", "onet_cls", "onet_box", "onet_landmark"}
    total = sum(losses.values())
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    only_p = MTCNN(train_stages=("pnet",)).train()
    assert set(only_p(images, targets)[1]) == {"pnet_cls", "pnet_box"}
