"""SSD's multibox loss: torchvision's numbers, images without objects, and it goes down when trained."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ssd_testing import healthy_weights
from torch import nn
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.ssd import SSD as TorchvisionSSD
from torchvision.ops import box_iou

from configs.common.ssd import ssdlite320_mobilenet_v3
from detkit.config import instantiate
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads.ssd_head import SSDHead
from detkit.models.detectors.ssd import SSD

NUM_CLASSES = 6
IMAGE_SIZE = (64, 64)


def _tiny_ssd(**kwargs) -> SSD:
    """An SSD whose head's loss() is used on hand-made head outputs (the backbone is a placeholder)."""
    default_boxes = DefaultBoxGenerator([[2], [2, 3]], min_ratio=0.2, max_ratio=0.8)
    head = SSDHead([8, 8], default_boxes.num_anchors_per_location(), NUM_CLASSES, **kwargs)
    return SSD(nn.Identity(), head, default_boxes, NUM_CLASSES, image_size=IMAGE_SIZE)


def _loss(model: SSD, logits, deltas, anchors, boxes, labels) -> dict[str, torch.Tensor]:
    return model.head.loss((logits, deltas), anchors, _targets(boxes, labels))


def _targets(boxes, labels) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)]


def _problem(seed: int, counts: list[int]):
    generator = torch.Generator().manual_seed(seed)
    model = _tiny_ssd()
    anchors = model.default_boxes(IMAGE_SIZE, [(8, 8), (4, 4)])
    num_anchors = anchors.shape[0]
    logits = torch.randn(len(counts), num_anchors, NUM_CLASSES + 1, generator=generator) * 2
    deltas = torch.randn(len(counts), num_anchors, 4, generator=generator)
    boxes, labels = [], []
    for count in counts:
        corner = torch.rand(count, 2, generator=generator) * 40
        boxes.append(torch.cat([corner, corner + 6 + torch.rand(count, 2, generator=generator) * 20], dim=1))
        labels.append(torch.randint(0, NUM_CLASSES, (count,), generator=generator))
    return anchors, logits, deltas, boxes, labels


def _torchvision_loss(anchors, logits, deltas, boxes, labels) -> dict[str, torch.Tensor]:
    matcher = tv_utils.SSDMatcher(0.5)
    matched = [
        matcher(box_iou(b, anchors)) if b.numel() else torch.full((anchors.shape[0],), -1, dtype=torch.int64)
        for b in boxes
    ]
    fake_self = SimpleNamespace(box_coder=tv_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3.0)
    targets = [{"boxes": b, "labels": l + 1} for b, l in zip(boxes, labels)]
    head_outputs = {"cls_logits": logits, "bbox_regression": deltas}
    return TorchvisionSSD.compute_loss(fake_self, targets, head_outputs, [anchors] * len(boxes), matched)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_torchvision(seed):
    anchors, logits, deltas, boxes, labels = _problem(seed, [3, 1, 5])
    expected = _torchvision_loss(anchors, logits, deltas, boxes, labels)
    actual = _loss(_tiny_ssd(), logits, deltas, anchors, boxes, labels)
    torch.testing.assert_close(actual["loss_classifier"], expected["classification"])
    torch.testing.assert_close(actual["loss_box_reg"], expected["bbox_regression"])


def test_image_without_objects_torchvision_rule_and_default():
    anchors, logits, deltas, boxes, labels = _problem(3, [2, 0])
    expected = _torchvision_loss(anchors, logits, deltas, boxes, labels)
    torchvision_rule = _loss(_tiny_ssd(empty_image_negatives=0), logits, deltas, anchors, boxes, labels)
    torch.testing.assert_close(torchvision_rule["loss_classifier"], expected["classification"])
    # By default the empty image adds its 3 hardest background losses (same normaliser).
    default = _loss(_tiny_ssd(), logits, deltas, anchors, boxes, labels)
    background = torch.nn.functional.cross_entropy(logits[1], torch.zeros(logits.shape[1], dtype=torch.int64), reduction="none")
    num_positives = (_tiny_ssd().head.match(anchors, _targets(boxes, labels))[0] > 0).sum()
    torch.testing.assert_close(
        default["loss_classifier"], expected["classification"] + background.topk(3).values.sum() / num_positives
    )
    torch.testing.assert_close(default["loss_box_reg"], expected["bbox_regression"])


def test_batch_without_objects_trains():
    anchors, logits, deltas, boxes, labels = _problem(4, [0, 0])
    logits.requires_grad_(True)
    losses = _loss(_tiny_ssd(), logits, deltas, anchors, boxes, labels)
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_classifier"].item() > 0
    losses["loss_classifier"].backward()
    assert int((logits.grad.abs().sum(-1) > 0).sum()) == 2 * 3  # 3 hardest negatives per image


def test_matching_assigns_best_default_box_to_every_object():
    model = _tiny_ssd()
    anchors = model.default_boxes(IMAGE_SIZE, [(8, 8), (4, 4)])
    tiny = torch.tensor([[10.0, 10.0, 12.0, 13.0], [40.0, 40.0, 60.0, 62.0]])  # IoU < 0.5 with any box
    labels, matched = model.head.match(anchors, _targets([tiny], [torch.tensor([4, 1])]))
    assert set(labels[0][labels[0] > 0].tolist()) == {5, 2}
    best = box_iou(tiny, anchors).argmax(dim=1)
    assert labels[0, best].tolist() == [5, 2]
    torch.testing.assert_close(matched[0, best], tiny)


def test_a_few_steps_on_a_fixed_batch_drive_the_loss_down():
    torch.manual_seed(0)
    config = ssdlite320_mobilenet_v3(num_classes=3)
    config.image_size = (160, 160)
    model = healthy_weights(instantiate(config)).train()
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 120, 160, generator=generator), torch.rand(3, 150, 110, generator=generator)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0], [80.0, 10.0, 150.0, 60.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[20.0, 30.0, 90.0, 140.0]]), "labels": torch.tensor([1])},
    ]  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(6):
        _, losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(float(total))
    assert history[-1] < 0.7 * history[0], history
