"""FrozenBatchNorm2d, the BatchNorm conversion and the norm / conv helpers."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from detkit.models.layers import ConvNormAct, FrozenBatchNorm2d, convert_batchnorm_to_frozen, make_norm


def trained_batchnorm(channels: int = 6, eps: float = 1e-5) -> nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(channels, eps=eps)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 2.0)
        bn.num_batches_tracked.fill_(7)
    return bn.eval()


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_frozen_batchnorm_equals_eval_batchnorm(eps):
    bn = trained_batchnorm(eps=eps)
    frozen = FrozenBatchNorm2d(6, eps=eps)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, not unexpected
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(frozen(x), bn(x), rtol=0, atol=1e-6)
    frozen.train()  # still frozen in train mode
    torch.testing.assert_close(frozen(x), bn(x), rtol=0, atol=1e-6)


def test_frozen_batchnorm_matches_torchvision():
    bn = trained_batchnorm()
    ours, theirs = FrozenBatchNorm2d(6), torchvision.ops.FrozenBatchNorm2d(6)
    ours.load_state_dict(bn.state_dict())
    theirs.load_state_dict(bn.state_dict())
    assert ours.eps == theirs.eps == 1e-5
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    assert list(ours.parameters()) == []
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_strict_load_from_batchnorm_reports_nothing():
    result = FrozenBatchNorm2d(6).load_state_dict(trained_batchnorm().state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_convert_batchnorm_to_frozen_keeps_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), trained_batchnorm(), nn.ReLU(), nn.Sequential(trained_batchnorm()))
    model.eval()
    x = torch.randn(1, 3, 8, 8)
    expected = model(x)
    converted = convert_batchnorm_to_frozen(model)
    assert converted is model
    assert isinstance(model[1], FrozenBatchNorm2d) and isinstance(model[3][0], FrozenBatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected)
    assert isinstance(convert_batchnorm_to_frozen(trained_batchnorm()), FrozenBatchNorm2d)


def test_make_norm_kinds():
    assert isinstance(make_norm("bn", 8), nn.BatchNorm2d)
    assert isinstance(make_norm("frozen_bn", 8, eps=1e-3), FrozenBatchNorm2d)
    assert isinstance(make_norm("syncbn", 8), nn.SyncBatchNorm)
    assert isinstance(make_norm("gn", 64), nn.GroupNorm)
    with pytest.raises(ValueError, match=r"unknown norm 'batch'.*'frozen_bn'"):
        make_norm("batch", 8)


def test_conv_norm_act_layout_matches_torchvision():
    ours = ConvNormAct(4, 8, 3, 2, norm="bn", activation=nn.ReLU)
    theirs = torchvision.ops.Conv2dNormActivation(4, 8, 3, 2)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert ours[0].bias is None
    assert ConvNormAct(4, 8, 1, norm=None, activation=None)[0].bias is not None
