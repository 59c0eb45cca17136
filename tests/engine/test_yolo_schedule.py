"""YOLOLinearLR, the bias parameter group and the ultralytics recipe helper against ultralytics'
trainer (its optimiser groups, and its warm-up and decay restated from BaseTrainer._do_train)."""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from configs.common.ultralytics_recipe import (
    ultralytics_accumulation, ultralytics_adamw_recipe, ultralytics_auto_lr, ultralytics_sgd_recipe,
)
from detkit.config import instantiate
from detkit.engine import build_optimizer
from detkit.engine.hooks import Hook
from detkit.engine.yolo_schedule import YOLOLinearLR
from engine_helpers import make_trainer
from toy_detector import ToyDetector


class _Record(Hook):
    def __init__(self) -> None:
        self.steps: list[list[tuple[float, float]]] = []

    def after_step(self, trainer) -> None:
        self.steps.append([(g["lr"], g["momentum"]) for g in trainer.optimizer.param_groups])


def _ultralytics_lr_and_momentum(ni, epoch, nb, epochs, lr0, bias, lrf=0.01, warmup_epochs=3.0):
    """BaseTrainer._do_train's warm-up (np.interp) and _setup_scheduler's linear lf, restated."""
    lf = max(1 - epoch / epochs, 0) * (1.0 - lrf) + lrf
    nw = round(min(warmup_epochs, max(epochs - 1, 0)) * nb)
    if nw and ni <= nw:
        lr = float(np.interp(ni, [0, nw], [0.1 * lr0 / 0.01 if bias else 0.0, lr0 * lf]))
        return lr, float(np.interp(ni, [0, nw], [0.8, 0.937]))
    return lr0 * lf, 0.937


def test_warmup_and_decay_follow_ultralytics_per_group(tmp_path):
    record = _Record()
    lr0 = 0.05
    trainer = make_trainer(
        tmp_path, batch_size=2, dataset_size=12, model=ToyDetector(norm=True), max_iter=None, max_epochs=5,
        optimizer={"lr": lr0, "momentum": 0.937, "nesterov": True, "weight_decay": 1e-4, "bias_group": True},
        schedule=YOLOLinearLR(lrf=0.01, warmup_epochs=3.0, warmup_bias_factor=10.0, warmup_momentum=0.8),
        hooks=[record],
    )
    trainer.train()
    tags = [g.get("param_group") for g in trainer.optimizer.param_groups]
    assert tags.count("bias") == 1 and len(tags) == 3
    assert len(record.steps) == 30  # 6 batches per epoch, 5 epochs
    for i, groups in enumerate(record.steps):
        for tag, (lr, momentum) in zip(tags, groups):
            want_lr, want_momentum = _ultralytics_lr_and_momentum(i, i // 6, 6, 5, lr0, tag == "bias")
            assert lr == pytest.approx(want_lr, rel=1e-12, abs=1e-15), (i, tag)
            assert momentum == pytest.approx(want_momentum, rel=1e-12), (i, tag)


def test_short_runs_and_resume_positions():
    schedule = YOLOLinearLR(warmup_epochs=3.0)
    assert schedule.fit_to_run(max_iter=20, max_epochs=2) == []
    assert schedule.yolo_warmup_iters == 10  # capped to E - 1 = 1 epoch, as ultralytics
    assert schedule(0, 1) == pytest.approx(0.505)
    groups = [{"base_lr": 1.0, "lr": 1.0, "momentum": 0.9}]
    schedule.adjust_param_groups(groups, 5, 0)  # half-way: lr 0.5 * lf(0), momentum half-way from 0.8
    assert groups[0]["lr"] == pytest.approx(0.5) and groups[0]["momentum"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="lr_schedule.lrf"):
        YOLOLinearLR(lrf=2.0)
    with pytest.raises(RuntimeError, match="fit_to_run"):
        YOLOLinearLR()(0, 0)


def test_bias_group_matches_ultralytics_optimizer_groups():
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_config_"))
    pytest.importorskip("ultralytics")
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    theirs = BaseTrainer.build_optimizer(
        SimpleNamespace(args=SimpleNamespace(), data={}), model, name="SGD", lr=0.01, momentum=0.937, decay=5e-4
    )
    ours = build_optimizer(model, name="SGD", lr=0.01, momentum=0.937, nesterov=True, weight_decay=5e-4,
                           weight_decay_norm=0.0, weight_decay_bias=0.0, bias_group=True)

    def members(optimizer):  # detkit leaves frozen parameters out (the DFL's fixed 0..15 conv)
        return {(g["weight_decay"], g.get("param_group") == "bias"): {id(p) for p in g["params"] if p.requires_grad}
                for g in optimizer.param_groups}

    assert members(ours) == members(theirs)
    assert sum(len(g["params"]) for g in ours.param_groups) == sum(p.requires_grad for p in model.parameters())
    assert all(g["nesterov"] and g["momentum"] == 0.937 for g in ours.param_groups)


def test_recipe_maps_ultralytics_hyper_parameters_to_detkit_scale():
    assert [ultralytics_accumulation(b) for b in (1, 8, 16, 48, 64, 100)] == [64, 8, 4, 1, 1, 1]
    recipe = ultralytics_sgd_recipe(batch_size=16)
    assert recipe["train"]["grad_accum_steps"] == 4
    assert recipe["train"]["clip_grad_norm"] == pytest.approx(10 / 64)
    assert recipe["train"]["ema"] == {"decay": 0.9999, "tau": 2000.0}
    optimizer = instantiate(recipe["optimizer"], defaults={"model": ToyDetector(norm=True)})
    # 64 images per step: ultralytics' gradient is 64 x detkit's, so lr x 64 and decay / 64.
    decays = sorted({g["weight_decay"] for g in optimizer.param_groups})
    assert decays == [0.0, pytest.approx(5e-4 / 64)]
    assert [g["base_lr"] for g in optimizer.param_groups] == [pytest.approx(0.64)] * 3
    schedule = instantiate(recipe["lr_schedule"])
    assert schedule.warmup_bias_factor == pytest.approx(10.0) and schedule.lrf == 0.01
    hooks = [instantiate(h) for h in recipe["train"]["hooks"]]
    assert [type(h).__name__ for h in hooks] == ["CloseMosaic"] and hooks[0].epochs == 10
    assert ultralytics_sgd_recipe(batch_size=100, close_mosaic=0)["train"]["hooks"] == []


def test_adamw_recipe_is_ultralytics_auto_choice(tmp_path):
    assert ultralytics_auto_lr(80) == 0.000119 and ultralytics_auto_lr(3) == 0.001429
    recipe = ultralytics_adamw_recipe(batch_size=16, num_classes=3)
    optimizer = instantiate(recipe["optimizer"], defaults={"model": ToyDetector(norm=True)})
    assert type(optimizer).__name__ == "AdamW"
    # AdamW's step ignores the loss scale and its decay is decoupled: ultralytics' values as they are.
    assert sorted({g["weight_decay"] for g in optimizer.param_groups}) == [0.0, pytest.approx(5e-4 * 64 / 64)]
    assert all(g["betas"] == (0.9, 0.999) and g["base_lr"] == 0.001429 for g in optimizer.param_groups)
    assert recipe["lr_schedule"].warmup_bias_factor == 0.0
    assert recipe["train"]["clip_grad_norm"] == pytest.approx(10 / 64)
    # Adam groups have no momentum: the warm-up moves the lrs only (all from 0, as ultralytics' auto).
    schedule = instantiate(recipe["lr_schedule"])
    schedule.fit_to_run(max_iter=50, max_epochs=5)
    groups = [dict(g) for g in optimizer.param_groups]
    for group in groups:
        group["lr"] = group["base_lr"] * schedule(0, 0)
    schedule.adjust_param_groups(groups, 0, 0)
    assert all(g["lr"] == 0.0 and "momentum" not in g for g in groups)

