"""Optimisers with parameter groups: weight decay rules, backbone lr multiplier, names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detkit.engine.optim import build_optimizer, parameter_groups
from detkit.models.layers import FrozenBatchNorm2d
from toy_detector import ToyDetector


def groups_by_name(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {name: group for group in optimizer.param_groups for name in group["names"]}


def test_norms_and_biases_get_their_own_weight_decay():
    model = ToyDetector(norm=True)
    optimizer = build_optimizer(model, lr=0.1, weight_decay=1e-4, weight_decay_norm=0.0,
                                weight_decay_bias=1e-5)
    groups = groups_by_name(optimizer)
    assert groups["backbone.0.weight"]["weight_decay"] == 1e-4
    assert groups["backbone.0.bias"]["weight_decay"] == 1e-5
    assert groups["backbone.1.weight"]["weight_decay"] == 0.0  # BatchNorm weight
    assert groups["backbone.1.bias"]["weight_decay"] == 0.0  # BatchNorm bias: the norm rule wins
    assert groups["cls_head.weight"]["weight_decay"] == 1e-4
    assert set(groups) == {name for name, _ in model.named_parameters()}


def test_backbone_lr_multiplier_by_prefix():
    model = ToyDetector()
    optimizer = build_optimizer(model, lr=0.1, backbone_lr_multiplier=0.1)
    groups = groups_by_name(optimizer)
    assert groups["backbone.0.weight"]["lr"] == pytest.approx(0.01)
    assert groups["backbone.0.weight"]["base_lr"] == pytest.approx(0.01)
    assert groups["box_head.weight"]["lr"] == pytest.approx(0.1)
    custom = groups_by_name(build_optimizer(model, lr=0.1, backbone_prefixes=("box_head.",),
                                            backbone_lr_multiplier=2.0))
    assert custom["box_head.bias"]["lr"] == pytest.approx(0.2)
    assert custom["backbone.0.weight"]["lr"] == pytest.approx(0.1)


def test_frozen_parameters_are_left_out():
    model = ToyDetector()
    for param in model.backbone.parameters():
        param.requires_grad_(False)
    groups = groups_by_name(build_optimizer(model))
    assert not any(name.startswith("backbone.") for name in groups)
    frozen_bn = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4))
    assert sum(len(g["params"]) for g in parameter_groups(frozen_bn, 0.1, 1e-4)) == 2
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(FrozenBatchNorm2d(4), 0.1, 1e-4)


@pytest.mark.parametrize("name, cls, options", [
    ("SGD", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("sgd", torch.optim.SGD, {"momentum": 0.0}),
    ("Adam", torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("AdamW", torch.optim.AdamW, {"weight_decay": 0.05}),
    ("RMSprop", torch.optim.RMSprop, {"alpha": 0.9, "momentum": 0.5}),
])
def test_every_optimiser_builds_with_its_options_and_steps(name, cls, options):
    model = ToyDetector()
    optimizer = build_optimizer(model, name=name, lr=0.01, **options)
    assert type(optimizer) is cls
    for key, value in options.items():
        if key != "weight_decay":
            assert optimizer.param_groups[0][key] == (tuple(value) if key == "betas" else value)
    before = model.cls_head.weight.detach().clone()
    images = [torch.rand(3, 16, 16) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[1.0, 2.0, 8.0, 9.0]]), "labels": torch.tensor([1])}] * 2
    _, losses = model(images, targets)
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, model.cls_head.weight)


def test_unknown_optimiser_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"optimizer.name='Adagrad'.*SGD, Adam, AdamW, RMSprop"):
        build_optimizer(ToyDetector(), name="Adagrad")
