"""ResNet backbone against torchvision's resnets, freezing, shapes and bad inputs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from detkit.models.backbones import ResNet, ShapeSpec
from detkit.models.layers import FrozenBatchNorm2d
from detkit.utils.checkpoint import load_weights

LEVELS = ("c2", "c3", "c4", "c5")
TORCHVISION_STAGES = {"c2": "layer1", "c3": "layer2", "c4": "layer3", "c5": "layer4"}


@pytest.mark.parametrize("depth", [18, 50])
def test_features_equal_torchvision(depth, torchvision_checkpoint, run_and_capture, assert_features_close):
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    path = torchvision_checkpoint(reference)

    backbone = ResNet(depth, weights=path).eval()

    assert backbone.load_report is not None
    assert backbone.load_report.missing_keys == []
    assert backbone.load_report.unexpected_keys == ["fc.weight", "fc.bias"]
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        actual = backbone(images)
    taps = {level: getattr(reference, stage) for level, stage in TORCHVISION_STAGES.items()}
    assert_features_close(actual, run_and_capture(reference, images, taps))


@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_norm_kinds_load_the_same_numbers(norm, torchvision_checkpoint, run_and_capture, assert_features_close):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = torchvision_checkpoint(reference)
    backbone = ResNet(18, norm=norm, out_levels=("c3",), weights=path).eval()
    norm_type = FrozenBatchNorm2d if norm == "frozen_bn" else torch.nn.BatchNorm2d
    assert isinstance(backbone.bn1, norm_type)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        actual = backbone(images)
    assert_features_close(actual, run_and_capture(reference, images, {"c3": reference.layer2}))


def test_syncbn_builds():
    backbone = ResNet(18, norm="syncbn", out_levels=("c2",))
    assert isinstance(backbone.bn1, torch.nn.SyncBatchNorm)


@pytest.mark.parametrize(
    ("depth", "channels"),
    [
        (18, (64, 128, 256, 512)),
        (34, (64, 128, 256, 512)),
        (50, (256, 512, 1024, 2048)),
        (101, (256, 512, 1024, 2048)),
    ],
)
def test_output_shape_matches_tensors(depth, channels):
    backbone = ResNet(depth).eval()
    expected = {level: ShapeSpec(c, 2 ** (i + 2)) for i, (level, c) in enumerate(zip(LEVELS, channels))}
    assert backbone.output_shape() == expected
    height, width = 64, 96
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, height, width))
    assert list(features) == list(LEVELS)
    for level, spec in expected.items():
        assert features[level].shape == (1, spec.channels, height // spec.stride, width // spec.stride)


def test_same_keys_as_torchvision_for_101():
    reference_keys = set(torchvision.models.resnet101(weights=None).state_dict())
    detkit_keys = set(ResNet(101, norm="bn").state_dict())
    assert detkit_keys == reference_keys - {"fc.weight", "fc.bias"}


def test_layers_deeper_than_requested_are_not_built():
    backbone = ResNet(18, out_levels=("c3", "c2"))
    assert not hasattr(backbone, "layer3")
    assert backbone.out_levels == ("c2", "c3")  # reordered shallowest first
    features = backbone(torch.randn(1, 3, 64, 64))
    assert list(features) == ["c2", "c3"]


@pytest.mark.parametrize("trainable_layers", [0, 1, 2, 3, 4, 5])
def test_frozen_stages_match_torchvision_trainable_layers(trainable_layers):
    reference = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=trainable_layers)
    reference_trainable = {
        name.removeprefix("body.")
        for name, p in reference.named_parameters()
        if p.requires_grad and name.startswith("body.")
    }
    backbone = ResNet(18, norm="bn", frozen_stages=5 - trainable_layers)
    trainable = {name for name, p in backbone.named_parameters() if p.requires_grad}
    # torchvision's body uses FrozenBatchNorm2d (no parameters); compare the conv weights.
    assert {n for n in trainable if "conv" in n or "downsample.0" in n} == reference_trainable


def test_train_step_leaves_frozen_stages_unchanged():
    torch.manual_seed(0)
    backbone = ResNet(18, norm="bn", frozen_stages=2)
    backbone.train()
    frozen_prefixes = ("conv1.", "bn1.", "layer1.")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    for name, parameter in backbone.named_parameters():
        assert parameter.requires_grad == (not name.startswith(frozen_prefixes)), name
    assert not backbone.layer1.training and not backbone.bn1.training and backbone.layer2.training

    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    loss = sum(f.square().mean() for f in backbone(torch.randn(2, 3, 64, 64)).values())
    loss.backward()
    optimizer.step()

    after = backbone.state_dict()
    for key, value in before.items():
        if key.startswith(frozen_prefixes):
            assert torch.equal(after[key], value), f"{key} changed"
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    assert not torch.equal(after["layer2.0.bn1.running_mean"], before["layer2.0.bn1.running_mean"])


def test_default_is_frozen_bn_with_two_frozen_stages():
    backbone = ResNet(18)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())


def test_unknown_level_names_it_and_the_available_ones():
    with pytest.raises(ValueError, match=r"c6.*available levels: \['c2', 'c3', 'c4', 'c5'\]"):
        ResNet(18, out_levels=("c4", "c6"))


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r"float images of shape \[B, 3, H, W\].*torch.uint8"),
        (torch.zeros(1, 1, 64, 64), ValueError, r"\[B, 3, H, W\].*got shape \[1, 1, 64, 64\]"),
        (torch.zeros(3, 64, 64), ValueError, r"\[B, 3, H, W\].*got shape \[3, 64, 64\]"),
    ],
)
def test_bad_images_are_rejected_with_the_expectation(images, error, message):
    with pytest.raises(error, match=message):
        ResNet(18, out_levels=("c2",))(images)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNet(42)
    with pytest.raises(ValueError, match="norm"):
        ResNet(18, norm="batchnorm")
    with pytest.raises(ValueError, match="frozen_stages"):
        ResNet(18, frozen_stages=6)


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="nope/resnet18.pth"):
        ResNet(18, weights=path)


def test_wrong_key_names_are_reported(tmp_path):
    """A DataParallel checkpoint ("module." prefix) loads nothing; the report says which keys."""
    state = {"module." + key: value for key, value in torchvision.models.resnet18(weights=None).state_dict().items()}
    path = tmp_path / "data_parallel.pth"
    torch.save(state, path)

    report = ResNet(18, out_levels=("c2",), weights=path).load_report

    assert report.loaded_keys == []
    assert "conv1.weight" in report.missing_keys and "layer1.0.bn1.running_var" in report.missing_keys
    assert "module.conv1.weight" in report.unexpected_keys
    assert "module.layer4.*" in str(report)  # long lists are grouped by prefix
    fixed = load_weights(ResNet(18, out_levels=("c2",)), path, prefix_map={"module.": ""})
    assert fixed.missing_keys == []
