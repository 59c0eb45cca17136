"""FPN against torchvision.ops.FeaturePyramidNetwork given the same weights."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from detkit.models.backbones import ShapeSpec
from detkit.models.necks import FPN, fpn_state_dict_from_torchvision

# A ResNet-like input: c2..c5, with sizes that do not halve exactly (odd sizes exercise the
# size-based nearest upsampling).
SHAPES = {"c2": ShapeSpec(16, 4), "c3": ShapeSpec(24, 8), "c4": ShapeSpec(32, 16), "c5": ShapeSpec(40, 32)}
SIZES = {"c2": (25, 33), "c3": (13, 17), "c4": (7, 9), "c5": (4, 5)}


def random_features(levels, batch: int = 2) -> dict[str, torch.Tensor]:
    return {level: torch.randn(batch, SHAPES[level].channels, *SIZES[level]) for level in levels}


def randomise_parameters(module: torch.nn.Module) -> None:
    """Non-zero biases and norm statistics, so a dropped bias or norm would show."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 1.5)
                else:
                    tensor.add_(torch.randn_like(tensor) * 0.1)


def assert_outputs_close(actual: dict, expected: dict, names: list[str]) -> None:
    assert list(actual) == names
    for name, reference in zip(names, expected.values()):
        assert actual[name].shape == reference.shape, name
        assert (actual[name] - reference).abs().max().item() < 1e-5, name


@pytest.mark.parametrize(
    ("extra_levels", "p6p7_source", "levels", "torchvision_extra", "names"),
    [
        (None, "auto", ("c2", "c3", "c4", "c5"), None, ["p2", "p3", "p4", "p5"]),
        ("maxpool", "auto", ("c2", "c3", "c4", "c5"), LastLevelMaxPool(), ["p2", "p3", "p4", "p5", "p6"]),
        # RetinaNet v2: P6 from C5 (torchvision: in_channels != out_channels)
        ("p6p7", "auto", ("c3", "c4", "c5"), LastLevelP6P7(40, 8), ["p3", "p4", "p5", "p6", "p7"]),
        # RetinaNet v1: P6 from P5 (torchvision: LastLevelP6P7(256, 256) whatever C5's channels)
        ("p6p7", "p5", ("c3", "c4", "c5"), LastLevelP6P7(8, 8), ["p3", "p4", "p5", "p6", "p7"]),
    ],
    ids=["no_extra", "maxpool", "p6p7_from_c5", "p6p7_from_p5"],
)
def test_equals_torchvision(extra_levels, p6p7_source, levels, torchvision_extra, names):
    torch.manual_seed(0)
    reference = FeaturePyramidNetwork([SHAPES[level].channels for level in levels], 8, extra_blocks=torchvision_extra)
    randomise_parameters(reference)
    fpn = FPN({level: SHAPES[level] for level in levels}, 8, extra_levels=extra_levels, p6p7_source=p6p7_source)

    fpn.load_state_dict(fpn_state_dict_from_torchvision(reference.state_dict(), fpn.in_levels, fpn.extra_names))

    features = random_features(levels)
    with torch.no_grad():
        actual = fpn(features)
        expected = reference(OrderedDict(features))
    assert_outputs_close(actual, expected, names)
    for name, spec in fpn.output_shape().items():
        assert actual[name].shape[1] == spec.channels
    assert list(fpn.output_shape()) == names


def test_p6p7_auto_uses_p5_when_c5_has_the_fpn_width():
    shapes = {"c4": ShapeSpec(8, 16), "c5": ShapeSpec(8, 32)}
    assert FPN(shapes, 8, extra_levels="p6p7").p6p7_from_output
    assert not FPN(shapes, 16, extra_levels="p6p7").p6p7_from_output
    assert not FPN(shapes, 8, extra_levels="p6p7", p6p7_source="c5").p6p7_from_output


def test_with_norm_equals_torchvision_with_norm_layer():
    torch.manual_seed(0)
    levels = ("c3", "c4", "c5")
    reference = FeaturePyramidNetwork([SHAPES[level].channels for level in levels], 8, norm_layer=torch.nn.BatchNorm2d)
    randomise_parameters(reference)
    reference.eval()
    fpn = FPN({level: SHAPES[level] for level in levels}, 8, norm="bn").eval()
    fpn.load_state_dict(fpn_state_dict_from_torchvision(reference.state_dict(), fpn.in_levels))
    features = random_features(levels)
    with torch.no_grad():
        assert_outputs_close(fpn(features), reference(OrderedDict(features)), ["p3", "p4", "p5"])


def test_version_1_keys_and_prefix_are_converted():
    torch.manual_seed(0)
    reference = FeaturePyramidNetwork([16, 24], 8)
    old_style = {}
    for key, value in reference.state_dict().items():
        old_style["backbone.fpn." + key.replace(".0.", ".")] = value  # inner_blocks.0.0.weight -> inner_blocks.0.weight
    old_style["backbone.body.conv1.weight"] = torch.zeros(1)
    converted = fpn_state_dict_from_torchvision(old_style, ["c2", "c3"], prefix="backbone.fpn.")
    fpn = FPN({"c2": SHAPES["c2"], "c3": SHAPES["c3"]}, 8)
    assert set(converted) == set(fpn.state_dict())
    fpn.load_state_dict(converted)


def test_state_dict_layout_is_keyed_by_level():
    fpn = FPN({"c3": SHAPES["c3"], "c4": SHAPES["c4"]}, 8, extra_levels="p6p7", p6p7_source="c5")
    assert sorted(fpn.state_dict()) == sorted(
        [
            f"{group}.{level}.{suffix}"
            for group, level in [
                ("lateral_convs", "c3"), ("lateral_convs", "c4"), ("output_convs", "c3"), ("output_convs", "c4")
            ]
            for suffix in ("0.weight", "0.bias")
        ]
        + ["extra_convs.p5.weight", "extra_convs.p5.bias", "extra_convs.p6.weight", "extra_convs.p6.bias"]
    )
    assert fpn.extra_names == ("p5", "p6")  # extra levels are named by stride: c4 at 16 -> p5 at 32


def test_in_levels_selects_and_orders_inputs():
    fpn = FPN(SHAPES, 8, in_levels=("c5", "c3"))
    assert fpn.in_levels == ("c3", "c5")
    outputs = fpn(random_features(("c2", "c3", "c4", "c5")))  # extra inputs are ignored
    assert list(outputs) == ["p3", "p5"]


def test_bad_inputs():
    fpn = FPN({"c3": SHAPES["c3"], "c4": SHAPES["c4"]}, 8)
    with pytest.raises(KeyError, match=r"missing \['c4'\]"):
        fpn(random_features(("c3",)))
    with pytest.raises(ValueError, match=r"'c4': expected \[B, 32, h, w\]"):
        fpn({"c3": torch.randn(1, 24, 8, 8), "c4": torch.randn(1, 31, 4, 4)})
    with pytest.raises(ValueError, match="extra_levels"):
        FPN(SHAPES, 8, extra_levels="p6")
    with pytest.raises(ValueError, match=r"in_levels \['c6'\]"):
        FPN(SHAPES, 8, in_levels=("c6",))
