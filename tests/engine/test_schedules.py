"""LR schedules: values at chosen iterations against closed-form expressions; warm-up; epochs."""

from __future__ import annotations

import io
import math

import pytest
import torch

from detkit.engine.schedules import (
    ConstantLR, CosineLR, ExponentialLR, InverseSqrtLR, InverseTimeLR, MultiStepLR, PolynomialLR,
)


@pytest.mark.parametrize("t", [0, 1, 99, 100, 101, 149, 150, 1000])
def test_multistep(t):
    schedule = MultiStepLR(milestones=[100, 150], gamma=0.1)
    expected = 1.0 if t < 100 else 0.1 if t < 150 else 0.01
    assert schedule(t) == pytest.approx(expected)


@pytest.mark.parametrize("t", [0, 10, 50, 99, 100, 200])
def test_cosine(t):
    schedule = CosineLR(max_t=100, min_factor=0.05)
    progress = min(t, 100) / 100
    expected = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))
    assert schedule(t) == pytest.approx(expected)
    assert CosineLR(max_t=100)(50) == pytest.approx(0.5)


@pytest.mark.parametrize("t", [0, 25, 50, 99, 100, 150])
def test_polynomial(t):
    schedule = PolynomialLR(max_t=100, power=0.9)
    assert schedule(t) == pytest.approx((1 - min(t, 100) / 100) ** 0.9)


@pytest.mark.parametrize("t", [0, 1, 7, 30])
def test_classic_decays(t):
    assert InverseTimeLR(k=0.5)(t) == pytest.approx(1 / (1 + 0.5 * t))
    assert ExponentialLR(gamma=0.9)(t) == pytest.approx(0.9 ** t)
    assert InverseSqrtLR(offset=4)(t) == pytest.approx(math.sqrt(4) / math.sqrt(4 + t))
    assert ConstantLR()(t) == 1.0


def test_classic_decays_per_epoch_change_only_at_epoch_boundaries():
    schedule = InverseTimeLR(k=1.0, by_epoch=True)
    # iterations 0..9 of epoch 0, 10..19 of epoch 1 (the trainer passes the epoch)
    assert schedule(5, epoch=0) == pytest.approx(1.0)
    assert schedule(12, epoch=1) == pytest.approx(0.5)
    assert schedule(19, epoch=1) == pytest.approx(0.5)
    assert ExponentialLR(gamma=0.5, by_epoch=True)(25, epoch=2) == pytest.approx(0.25)
    assert MultiStepLR(milestones=[2], by_epoch=True)(1000, epoch=1) == 1.0


@pytest.mark.parametrize("iteration", [0, 1, 50, 99, 100, 101])
def test_linear_warmup_multiplies_the_decay(iteration):
    schedule = CosineLR(max_t=1000, warmup_iters=100, warmup_factor=0.001)
    decay = 0.5 * (1 + math.cos(math.pi * iteration / 1000))
    alpha = iteration / 100
    warmup = 0.001 * (1 - alpha) + alpha if iteration < 100 else 1.0
    assert schedule(iteration) == pytest.approx(warmup * decay)


def test_constant_warmup():
    schedule = MultiStepLR(milestones=[50], warmup_iters=10, warmup_factor=0.25,
                           warmup_method="constant")
    assert schedule(0) == schedule(9) == pytest.approx(0.25)
    assert schedule(10) == 1.0


def test_state_dict_reports_changed_settings():
    saved = MultiStepLR(milestones=[10, 20], gamma=0.1, warmup_iters=5).state_dict()
    assert saved["type"] == "MultiStepLR" and saved["milestones"] == [10, 20]
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == saved
    assert MultiStepLR(milestones=[10, 20], gamma=0.1, warmup_iters=5).load_state_dict(saved) == []
    changes = MultiStepLR(milestones=[10, 30], gamma=0.1, warmup_iters=5).load_state_dict(saved)
    assert len(changes) == 1 and "milestones" in changes[0]


@pytest.mark.parametrize("build, key", [
    (lambda: MultiStepLR(milestones=[20, 10]), "milestones"),
    (lambda: CosineLR(max_t=0), "max_t"),
    (lambda: ExponentialLR(gamma=1.5), "gamma"),
    (lambda: ConstantLR(warmup_method="exp"), "warmup_method"),
    (lambda: ConstantLR(warmup_iters=-1), "warmup_iters"),
])
def test_bad_settings_name_the_key(build, key):
    with pytest.raises(ValueError, match=f"lr_schedule.{key}"):
        build()
