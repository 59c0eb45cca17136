"""PackedConv2d: oneDNN with a weight reordered once, the activation as a post-op.

It must give ``F.conv2d`` (then the activation) on every input it takes the packed path for, fall
back to exactly that where it may not (gradients, tracing, export), keep a conv's state dict, and
notice a changed weight.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detkit.models.backbones.darknet import LeakyReLU01
from detkit.models.fuse import fold_batch_norms
from detkit.models.layers import ConvNormAct
from detkit.models.packed_conv import (
    MAX_PACKED_SHAPES,
    PackedConv2d,
    pack_convolutions,
    packing_available,
)

pytestmark = pytest.mark.skipif(not packing_available(), reason="this PyTorch has no oneDNN pointwise convolution")

# in, out, kernel, stride, padding, groups, bias, input size
CASES = [
    (3, 16, 3, 1, 1, 1, True, 40),
    (16, 32, 3, 2, 1, 1, False, 33),
    (64, 24, 1, 1, 0, 1, True, 13),
    (32, 32, 3, 1, 1, 32, True, 20),  # depthwise
    (48, 64, 5, 1, 2, 4, True, 17),  # grouped
]
ACTIVATIONS = {"none": None, "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.1)}


def reference(conv: nn.Conv2d, activation: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    out = conv(x)
    return out if activation is None else activation(out)


def seeded_conv(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, groups: int, bias: bool) -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=bias).eval()
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return conv


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("case", CASES, ids=lambda case: "x".join(map(str, case)))
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_packed_path_equals_the_plain_conv(case, activation, layout):
    in_ch, out_ch, kernel, stride, padding, groups, bias, size = case
    conv = seeded_conv(in_ch, out_ch, kernel, stride, padding, groups, bias)
    act = ACTIVATIONS[activation]
    packed = PackedConv2d.from_conv(conv, act)
    x = torch.randn(2, in_ch, size, size)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = reference(conv, act, x)
        out = packed(x)
        again = packed(x)  # the second call uses the cached layout
    assert len(packed._packed) == 2, "one reordered weight for the one input shape (plus its owner key)"
    # oneDNN's own convolution either way: equal up to the order of its float32 sums
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(out, again)
    assert out.shape == expected.shape


def test_a_conv_with_gradients_runs_the_plain_conv_and_trains():
    conv = seeded_conv(8, 8, 3, 1, 1, 1, True).train()
    packed = PackedConv2d.from_conv(conv, nn.LeakyReLU(0.1))
    x = torch.randn(1, 8, 9, 9, requires_grad=True)
    out = packed(x)
    assert packed._packed == {}, "no packed weight on the gradient path"
    expected = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, padding=1), 0.1)
    assert torch.equal(out, expected)
    out.sum().backward()
    assert packed.weight.grad is not None and x.grad is not None


def test_state_dict_parameters_and_copies_are_the_convs():
    conv = seeded_conv(4, 6, 3, 1, 1, 1, True)
    packed = PackedConv2d.from_conv(conv)
    assert isinstance(packed, nn.Conv2d)
    assert packed.weight is conv.weight and packed.bias is conv.bias
    assert list(packed.state_dict()) == list(conv.state_dict())
    x = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        packed(x)
    copied = copy.deepcopy(packed)
    assert copied._packed == {} and packed._packed, "the cache is not copied"
    with torch.inference_mode():
        torch.testing.assert_close(copied(x), packed(x), rtol=0, atol=0)


def test_a_changed_weight_is_packed_again():
    conv = seeded_conv(4, 6, 3, 1, 1, 1, True)
    packed = PackedConv2d.from_conv(conv)
    x = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        before = packed(x)
    with torch.no_grad():
        packed.weight.mul_(2.0)
        packed.bias.zero_()
    with torch.inference_mode():
        after = packed(x)
        torch.testing.assert_close(after, conv(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after, before)


def test_at_most_max_packed_shapes_are_kept_and_others_still_run():
    conv = seeded_conv(4, 6, 3, 1, 1, 1, True)
    packed = PackedConv2d.from_conv(conv)
    with torch.inference_mode():
        for size in range(6, 6 + MAX_PACKED_SHAPES + 3):
            x = torch.randn(1, 4, size, size)
            torch.testing.assert_close(packed(x), conv(x), rtol=1e-5, atol=1e-5)
    assert len(packed._packed) == MAX_PACKED_SHAPES + 1  # the shapes and the owner key


def test_export_sees_the_plain_conv():
    packed = PackedConv2d.from_conv(seeded_conv(4, 6, 3, 1, 1, 1, True), nn.LeakyReLU(0.1))
    x = torch.randn(1, 4, 8, 8)
    program = torch.export.export(packed, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("mkldnn" in target for target in targets), targets
    assert any("conv2d" in target for target in targets) and any("leaky_relu" in target for target in targets)
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), packed(x), rtol=1e-5, atol=1e-5)


def test_pack_convolutions_takes_the_activation_after_a_folded_norm():
    torch.manual_seed(0)
    model = nn.Sequential(
        ConvNormAct(3, 8, 3, activation=LeakyReLU01),
        nn.Conv2d(8, 4, 1),  # no activation after it
        ConvNormAct(4, 4, 3, activation=nn.SiLU),  # SiLU: not a post-op, stays
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        expected = model(x)
    assert fold_batch_norms(model) == 2  # the norms become Identity slots
    assert pack_convolutions(model) == 3
    assert type(model[0][2]) is nn.Identity and model[0][0].post_op == "leaky_relu"
    assert model[1].post_op == "none" and model[2][0].post_op == "none" and type(model[2][2]) is nn.SiLU
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    assert pack_convolutions(model) == 0, "packed convs are not packed again"


def test_from_conv_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="cannot pack"):
        PackedConv2d.from_conv(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="cannot fuse"):
        PackedConv2d.from_conv(nn.Conv2d(3, 4, 3), nn.SiLU())
