"""VGG backbone against torchvision's vgg ``features`` at the stage outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from detkit.models.backbones import VGG, ShapeSpec


def torchvision_vgg_features(config: str, batch_norm: bool = False) -> nn.Module:
    """torchvision's VGG conv stack under the key prefix ``features.`` (the classifier, 100M+
    parameters that a backbone never loads, is left out to keep the test fast)."""
    return nn.ModuleDict({"features": make_layers(cfgs[config], batch_norm=batch_norm)}).eval()


# level -> index in torchvision's vgg16().features of the layer producing it
VGG16_TAPS = {"c1": 8, "c2": 15, "c3": 22, "c4": 29, "c5": 30}


def test_vgg16_features_equal_torchvision(torchvision_checkpoint, run_and_capture, assert_features_close):
    torch.manual_seed(0)
    reference = torchvision_vgg_features("D")  # vgg16
    path = torchvision_checkpoint(reference)

    backbone = VGG(16, out_levels=tuple(VGG16_TAPS), weights=path).eval()

    assert backbone.load_report.ok
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        actual = backbone(images)
    taps = {level: reference.features[index] for level, index in VGG16_TAPS.items()}
    assert_features_close(actual, run_and_capture(reference.features, images, taps))


def test_vgg11_bn_layout_and_numbers(torchvision_checkpoint, run_and_capture, assert_features_close):
    torch.manual_seed(0)
    reference = torchvision_vgg_features("A", batch_norm=True)  # vgg11_bn
    path = torchvision_checkpoint(reference)
    backbone = VGG(11, norm="bn", out_levels=("c2", "c5"), weights=path).eval()
    assert backbone.load_report.ok
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        actual = backbone(images)
    # vgg11_bn: stage 3 is conv-bn-relu x2 ending at index 13; pool5 is the last layer (28).
    taps = {"c2": reference.features[13], "c5": reference.features[28]}
    assert_features_close(actual, run_and_capture(reference.features, images, taps))


def test_ssd_style_truncation_and_ceil_mode(torchvision_checkpoint, run_and_capture, assert_features_close):
    torch.manual_seed(0)
    reference = torchvision_vgg_features("D")
    reference.features[16].ceil_mode = True  # pool3, as torchvision's SSD300 VGG16 extractor
    path = torchvision_checkpoint(reference)

    backbone = VGG(16, out_levels=("c3", "c4"), ceil_mode_stages=(3,), weights=path).eval()

    assert backbone.load_report.unexpected_keys == []  # pool5 has no parameters
    assert len(backbone.features) == 30  # up to conv5_3's ReLU: no pool5, SSD adds its own
    images = torch.randn(1, 3, 76, 76)  # 76 -> 38 -> 19 -> ceil(19 / 2) = 10
    with torch.no_grad():
        actual = backbone(images)
    assert actual["c3"].shape[-2:] == (10, 10)
    taps = {"c3": reference.features[22], "c4": reference.features[29]}
    assert_features_close(actual, run_and_capture(reference.features, images, taps))


def test_output_shape_matches_tensors():
    backbone = VGG(16, out_levels=("c1", "c2", "c3", "c4", "c5")).eval()
    shapes = backbone.output_shape()
    assert shapes == {
        "c1": ShapeSpec(128, 2),
        "c2": ShapeSpec(256, 4),
        "c3": ShapeSpec(512, 8),
        "c4": ShapeSpec(512, 16),
        "c5": ShapeSpec(512, 32),
    }
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64))
    for level, spec in shapes.items():
        assert features[level].shape == (1, spec.channels, 64 // spec.stride, 64 // spec.stride)


def test_frozen_stages():
    backbone = VGG(16, out_levels=("c3",), frozen_stages=2)
    # stage 1: features 0..4, stage 2: features 5..9 (conv, relu, conv, relu, pool)
    for index, layer in enumerate(backbone.features):
        for parameter in layer.parameters():
            assert parameter.requires_grad == (index >= 10), index


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"c6.*available levels: \['c1', 'c2', 'c3', 'c4', 'c5'\]"):
        VGG(16, out_levels=("c6",))
    with pytest.raises(ValueError, match="ceil_mode_stages"):
        VGG(16, ceil_mode_stages=(6,))
    with pytest.raises(TypeError, match="uint8"):
        VGG(11, out_levels=("c1",))(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
