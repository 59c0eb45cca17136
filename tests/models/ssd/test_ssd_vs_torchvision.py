"""SSD300-VGG16 equals torchvision's ssd300_vgg16 with the same (converted) weights on real images."""

from __future__ import annotations

import pytest
import torch
from ssd_testing import assert_same_detections, detkit_twin, load_image
from torchvision.models.detection import ssd300_vgg16

from configs.common.ssd import SSD300_SCALES_COCO, ssd_vgg16

NUM_CLASSES = 90  # torchvision's 91 outputs minus the background


@pytest.fixture(scope="module")
def twins():
    torch.manual_seed(0)
    reference = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, score_thresh=0.01)
    config = ssd_vgg16(NUM_CLASSES, input_size=300, scales=SSD300_SCALES_COCO)
    config.head.score_thresh = 0.01
    model = detkit_twin(reference, "ssd300_vgg16", config)
    images = [load_image("dog.jpg"), load_image("person.jpg")]
    return reference, model, images


def test_eval_outputs_equal_torchvision(twins):
    reference, model, images = twins
    reference.eval()
    model.eval()
    with torch.no_grad():
        expected = reference(images)
        actual, losses = model(images)
    assert losses == {}
    assert_same_detections(expected, actual, min_count=21)
    for detection, image in zip(actual, images):  # boxes in the given image's pixels
        height, width = image.shape[-2:]
        assert float(detection["boxes"][:, 0::2].max()) <= width and float(detection["boxes"][:, 1::2].max()) <= height


@pytest.mark.parametrize(("channels_last", "rtol"), [("off", 1e-6), ("train", 1e-4)])
def test_training_loss_equals_torchvision(twins, channels_last, rtol):
    # "off": torchvision's NCHW convolutions, the same numbers; "train" (the default) runs NHWC
    # convolutions in training, which round differently.
    reference, model, images = twins
    targets = [
        {"boxes": torch.tensor([[130.0, 220.0, 310.0, 540.0], [470.0, 70.0, 690.0, 170.0]]),
         "labels": torch.tensor([17, 2])},
        {"boxes": torch.tensor([[190.0, 95.0, 275.0, 380.0], [60.0, 260.0, 200.0, 350.0], [400.0, 110.0, 600.0, 350.0]]),
         "labels": torch.tensor([0, 17, 18])},
    ]  # fmt: skip
    reference_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    reference.train()
    model.train()
    model.channels_last = channels_last
    with torch.no_grad():
        expected = reference(images, reference_targets)
        _, losses = model(images, targets)
    model.channels_last = "train"
    torch.testing.assert_close(losses["loss_classifier"], expected["classification"], rtol=rtol, atol=1e-6)
    torch.testing.assert_close(losses["loss_box_reg"], expected["bbox_regression"], rtol=rtol, atol=1e-6)
