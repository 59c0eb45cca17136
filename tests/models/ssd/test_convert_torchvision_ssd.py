"""convert_torchvision_ssd: strict loading, COCO's 80 contiguous classes, clear errors."""

from __future__ import annotations

import pytest
import torch
from ssd_testing import assert_same_detections, healthy_weights, load_image, perturb_batch_norms
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from configs.common.ssd import ssdlite320_mobilenet_v3
from detkit.config import instantiate
from detkit.models.convert.torchvision_rcnn import COCO_CATEGORY_IDS
from detkit.models.convert.torchvision_ssd import convert_torchvision_ssd


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return perturb_batch_norms(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)).eval()


def test_coco_contiguous_keeps_the_80_coco_logits(reference):
    checkpoint = convert_torchvision_ssd(reference.state_dict(), "ssdlite320_mobilenet_v3_large", coco_contiguous=True)
    assert checkpoint["meta"]["num_classes"] == 80 and checkpoint["meta"]["arch"] == "ssdlite320_mobilenet_v3_large"
    model = instantiate(ssdlite320_mobilenet_v3(80)).eval()
    model.load_state_dict(checkpoint["model"], strict=True)
    images = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.head(list(reference.backbone(images).values()))["cls_logits"]
        logits, _ = model.head(list(model.backbone(images).values()))
    torch.testing.assert_close(logits, expected[..., [0, *COCO_CATEGORY_IDS]])


def test_wrong_state_dict_or_arch_raises(reference):
    with pytest.raises(ValueError, match="not a torchvision ssd300_vgg16"):
        convert_torchvision_ssd(reference.state_dict(), "ssd300_vgg16")
    with pytest.raises(ValueError, match="supported"):
        convert_torchvision_ssd(reference.state_dict(), "ssd512_vgg16")
    small = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
    with pytest.raises(ValueError, match="91-way"):
        convert_torchvision_ssd(small.state_dict(), "ssdlite320_mobilenet_v3_large", coco_contiguous=True)


def test_detkit_convert_writes_a_checkpoint_that_load_rebuilds(tmp_path):
    # The command stamps the zoo config's model section into the checkpoint: detkit.load needs no config.
    import detkit
    from detkit.cli import main

    torch.manual_seed(0)
    reference = healthy_weights(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91))
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "detkit.pth"
    assert main(["convert", "--from", "torchvision", "--arch", "ssdlite320_mobilenet_v3_large",
                 str(tmp_path / "tv.pth"), str(out)]) == 0
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["class_names"] is None and checkpoint["model_config"]["num_classes"] == 90
    model = detkit.load(out).eval()
    images = [load_image("dog.jpg")]
    with torch.no_grad():
        expected = reference.eval()(images)
        actual, _ = model(images)
    assert_same_detections(expected, actual, min_count=21)

    contiguous = tmp_path / "coco80.pth"
    assert main(["convert", "--from", "torchvision", "--arch", "ssdlite320_mobilenet_v3_large", "--coco-contiguous",
                 str(tmp_path / "tv.pth"), str(contiguous)]) == 0
    model = detkit.load(contiguous)
    assert model.num_classes == 80 and model.class_names[:3] == ["person", "bicycle", "car"]
