"""SSDLite320-MobileNetV3 equals torchvision's ssdlite320_mobilenet_v3_large with the same weights."""

from __future__ import annotations

import pytest
import torch
from ssd_testing import assert_same_detections, detkit_twin, healthy_weights, load_image
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from configs.common.ssd import ssdlite320_mobilenet_v3

NUM_CLASSES = 90


@pytest.fixture(scope="module")
def twins():
    torch.manual_seed(0)
    reference = ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, score_thresh=0.01
    )
    healthy_weights(reference)
    config = ssdlite320_mobilenet_v3(NUM_CLASSES)
    config.head.score_thresh = 0.01
    model = detkit_twin(reference, "ssdlite320_mobilenet_v3_large", config)
    images = [load_image("dog.jpg"), load_image("person.jpg")]
    return reference, model, images


def test_eval_outputs_equal_torchvision(twins):
    reference, model, images = twins
    reference.eval()
    model.eval()
    with torch.no_grad():
        expected = reference(images)
        actual, _ = model(images)
    assert_same_detections(expected, actual, min_count=21)


@pytest.mark.parametrize(("channels_last", "rtol"), [("off", 1e-6), ("train", 1e-4)])
def test_training_loss_equals_torchvision(twins, channels_last, rtol):
    # "off": torchvision's NCHW convolutions, the same numbers; "train" (the default) runs NHWC
    # convolutions in training, which round differently.
    # Training mode: BatchNorm uses batch statistics, in both models alike.
    reference, model, images = twins
    targets = [
        {"boxes": torch.tensor([[130.0, 220.0, 310.0, 540.0]]), "labels": torch.tensor([15])},
        {"boxes": torch.tensor([[190.0, 95.0, 275.0, 380.0], [400.0, 110.0, 600.0, 350.0]]),
         "labels": torch.tensor([0, 18])},
    ]  # fmt: skip
    reference.train()
    model.train()
    model.channels_last = channels_last
    with torch.no_grad():
        expected = reference(images, [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets])
        _, losses = model(images, targets)
    model.channels_last = "train"
    torch.testing.assert_close(losses["loss_classifier"], expected["classification"], rtol=rtol, atol=1e-6)
    torch.testing.assert_close(losses["loss_box_reg"], expected["bbox_regression"], rtol=rtol, atol=1e-6)
