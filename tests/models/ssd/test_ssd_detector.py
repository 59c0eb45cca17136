"""SSD detector plumbing: backbone shapes, output format, clear errors on bad inputs and parts."""

from __future__ import annotations

import pytest
import torch
from ssd_testing import healthy_weights

from configs.common.ssd import SSDLITE_CHANNELS, ssdlite320_mobilenet_v3
from detkit.config import instantiate
from detkit.models.backbones.ssd_vgg import SSDVGG
from detkit.models.backbones.ssdlite_mobilenet import SSDLiteMobileNetV3
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads.ssd_head import SSDHead, SSDLiteHead
from detkit.models.detectors.ssd import SSD


@pytest.fixture(scope="module")
def ssdlite():
    torch.manual_seed(0)
    config = ssdlite320_mobilenet_v3(num_classes=4)
    config.image_size = (128, 128)
    return healthy_weights(instantiate(config)).eval()


def test_ssd512_levels_match_the_paper():
    backbone = SSDVGG(512)
    sizes = [tuple(f.shape[-2:]) for f in backbone(torch.zeros(1, 3, 512, 512)).values()]
    assert sizes == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert backbone.out_channels == [512, 1024, 512, 256, 256, 256, 256]


def test_ssdlite_full_tail_channels():
    backbone = SSDLiteMobileNetV3(reduced_tail=False)
    assert backbone.out_channels == [672, 960, 512, 256, 256, 128]
    assert SSDLiteMobileNetV3().out_channels == list(SSDLITE_CHANNELS)


def test_predictions_format_and_channels_last_agree(ssdlite):
    images = [torch.rand(3, 90, 140), torch.rand(3, 128, 128)]
    with torch.no_grad():
        predictions, losses = ssdlite(images)
    assert losses == {} and len(predictions) == 2
    for prediction, image in zip(predictions, images):
        scores = prediction["scores"]
        assert prediction["labels"].dtype == torch.int64 and bool((scores[:-1] >= scores[1:]).all())
        assert float(prediction["boxes"][:, 2].max()) <= image.shape[2]
    config = ssdlite320_mobilenet_v3(num_classes=4)
    config.image_size, config.channels_last = (128, 128), "always"
    nhwc = instantiate(config).eval()
    nhwc.load_state_dict(ssdlite.state_dict())
    with torch.no_grad():
        batch = ssdlite.preprocess(images)[0].tensor
        expected = ssdlite.head(list(ssdlite.backbone(batch).values()))
        actual = nhwc.head(list(nhwc.backbone(nhwc.preprocess(images)[0].tensor).values()))
    # NHWC convolutions accumulate in another order, and the random-weight network amplifies the
    # rounding: within 5e-4 of the output scale (1.2e-4 measured on one Xeon's oneDNN kernels,
    # below 1e-4 on another). A layout bug would be off by the scale itself.
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=5e-4 * float(e.abs().max()))


def test_channels_last_modes(ssdlite):
    batch = [torch.rand(3, 64, 64)]
    assert ssdlite.channels_last == "train" and ssdlite.preprocess(batch)[0].tensor.is_contiguous()  # eval: NCHW
    ssdlite.train()
    try:
        assert ssdlite.preprocess(batch)[0].tensor.is_contiguous(memory_format=torch.channels_last)
    finally:
        ssdlite.eval()
    with pytest.raises(ValueError, match="channels_last"):
        SSD(SSDLiteMobileNetV3(), SSDLiteHead(SSDLITE_CHANNELS, [4] * 6, 3), DefaultBoxGenerator([[2]] * 6), 3,
            channels_last=True)


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.rand(2, 3, 64, 64), TypeError, "list"),
        ([torch.rand(1, 64, 64)], ValueError, r"\[3, H, W\]"),
        ([torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)], TypeError, "floating point"),
    ],
)
def test_bad_images_raise(ssdlite, images, error, message):
    with pytest.raises(error, match=message):
        ssdlite(images)


def test_training_needs_valid_targets(ssdlite):
    ssdlite.train()
    try:
        with pytest.raises(ValueError, match="targets"):
            ssdlite([torch.rand(3, 64, 64)])
        with pytest.raises(ValueError):
            ssdlite([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([1])}])
    finally:
        ssdlite.eval()


def test_mismatched_parts_raise():
    boxes = DefaultBoxGenerator([[2]] * 6)
    with pytest.raises(ValueError, match="classes"):
        SSD(SSDLiteMobileNetV3(), SSDLiteHead(SSDLITE_CHANNELS, [4] * 6, 3), boxes, 5)
    with pytest.raises(ValueError, match="boxes per cell"):
        SSD(SSDLiteMobileNetV3(), SSDLiteHead(SSDLITE_CHANNELS, [6] * 6, 3), boxes, 3)
    with pytest.raises(ValueError, match="channels"):
        SSD(SSDLiteMobileNetV3(), SSDHead([8] * 6, [4] * 6, 3), boxes, 3)
