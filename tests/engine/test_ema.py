"""ModelEMA: decay warm-up formula, averaging of float tensors, copying of integer buffers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detkit.engine.ema import ModelEMA


def test_decay_warms_up_like_yolov5():
    ema = ModelEMA(nn.Linear(2, 2), decay=0.9999, tau=2000)
    for updates in (1, 10, 2000, 20000):
        ema.updates = updates - 1
        assert ema.current_decay() == pytest.approx(0.9999 * (1 - math.exp(-updates / 2000)))


def test_update_is_the_moving_average_and_buffers_follow():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.5, tau=1.0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    model.train()
    model(torch.randn(4, 3))  # moves BN running stats and num_batches_tracked
    ema.update(model)
    d = 0.5 * (1 - math.exp(-1.0))
    for key, value in model.state_dict().items():
        averaged = ema.module.state_dict()[key]
        if value.dtype.is_floating_point:
            torch.testing.assert_close(averaged, d * start[key] + (1 - d) * value)
        else:
            assert torch.equal(averaged, value)
    assert ema.updates == 1
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_state_dict_round_trip():
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.9, tau=5)
    for _ in range(3):
        with torch.no_grad():
            model.weight.mul_(0.5)
        ema.update(model)
    restored = ModelEMA(nn.Linear(2, 2), decay=0.9, tau=5)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 3
    assert torch.equal(restored.module.weight, ema.module.weight)


def test_bad_decay_is_rejected():
    with pytest.raises(ValueError, match="train.ema.decay"):
        ModelEMA(nn.Linear(2, 2), decay=1.0)
