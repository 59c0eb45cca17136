"""Schedules follow the run's length: fractions and ``max_t=None`` resolve against ``max_iter``
(or the epochs), explicit iteration values win, and every recipe's lr curve at its own length is
exactly what it was when the recipes stated iterations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from detkit.config import instantiate, load_config
from detkit.engine import CosineLR, LRSchedule, MultiStepLR, PolynomialLR
from engine_helpers import make_trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHAPES = ["faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py", "mask_rcnn/mask_rcnn_r18_fpn_1x_shapes.py",
          "ssd/ssdlite320_mobilenetv3_shapes.py", "yolo/yolov3_tiny_320_shapes.py"]

# The schedules the recipes stated in iterations / epochs before they followed the run's length.
SHAPES_COSINE = dict(max_t=1200, min_factor=0.01, warmup_iters=100, warmup_factor=0.001)
RECIPES = {
    **{name: (CosineLR, SHAPES_COSINE, 1200, None) for name in SHAPES},
    "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py": (MultiStepLR, dict(milestones=[60000, 80000], warmup_iters=1000), 90000, None),
    "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py": (MultiStepLR, dict(milestones=[60000, 80000], warmup_iters=1000), 90000, None),
    "faster_rcnn/faster_rcnn_r50_fpn_1x_voc.py": (MultiStepLR, dict(milestones=[12000, 16000], warmup_iters=1000), 18000, None),
    "mask_rcnn/mask_rcnn_r50_fpn_1x_voc.py": (MultiStepLR, dict(milestones=[12, 16], by_epoch=True, warmup_iters=100), None, 18),
    "ssd/ssd300_vgg16_120e_coco.py": (MultiStepLR, dict(milestones=[80, 110], by_epoch=True, warmup_iters=1000), None, 120),
    "ssd/ssdlite320_mobilenetv3_600e_coco.py": (CosineLR, dict(max_t=600, by_epoch=True, warmup_iters=600), None, 600),
    "yolo/yolov3_d53_416_coco.py": (MultiStepLR, dict(milestones=[218, 246], by_epoch=True, warmup_iters=2000, warmup_factor=0.1), None, 273),
    "mtcnn/mtcnn_pnet_train_wider_face.py": (MultiStepLR, dict(milestones=[13200, 19200], warmup_iters=500, warmup_factor=0.01), 24000, None),
}


def _schedule(name: str, *overrides: str) -> tuple[LRSchedule, dict]:
    cfg = load_config(CONFIGS / name, list(overrides))
    return instantiate(cfg["lr_schedule"], "lr_schedule"), dict(cfg["train"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_keeps_its_lr_curve_at_its_own_length(name: str):
    cls, old_arguments, max_iter, max_epochs = RECIPES[name]
    schedule, train = _schedule(name)
    assert (train["max_iter"], train["max_epochs"]) == (max_iter, max_epochs)
    iters_per_epoch = 500
    max_iter = max_iter or max_epochs * iters_per_epoch
    epochs = max_epochs or max_iter
    assert schedule.fit_to_run(max_iter, epochs) == []
    old = cls(**{"warmup_factor": 0.001, **old_arguments})
    positions = sorted({*range(0, 3000), *range(0, max_iter + 2, max(1, max_iter // 2000))})
    for iteration in positions:
        epoch = iteration // iters_per_epoch if max_epochs else 0
        assert schedule(iteration, epoch) == old(iteration, epoch), (name, iteration)


@pytest.mark.parametrize("name", SHAPES)
def test_a_shapes_run_of_200_iterations_warms_up_and_decays_to_its_floor(tmp_path: Path, name: str):
    schedule, train = _schedule(name, "train.max_iter=200")
    trainer = make_trainer(tmp_path, schedule=schedule, max_iter=200, eval_period=train["eval_period"],
                           eval_fraction=train["eval_fraction"])
    warmup = trainer.lr_schedule.warmup_iters
    assert warmup == round(200 / 12)  # 100 of 1200 before
    assert trainer.lr_schedule(warmup - 1) < trainer.lr_schedule.decay(warmup - 1)  # still warming
    assert trainer.lr_schedule(warmup) == trainer.lr_schedule.decay(warmup)  # warm-up over
    assert trainer.lr_schedule(199) == pytest.approx(0.01, abs=1e-4)
    assert trainer.lr_schedule(200) == pytest.approx(0.01)  # the floor, at the run's end
    assert trainer.eval_period == 100  # half-way, as at 1200


def test_a_short_coco_run_moves_warm_up_and_steps_with_it(tmp_path: Path):
    schedule, _ = _schedule("faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py", "train.max_iter=900")
    make_trainer(tmp_path, schedule=schedule, max_iter=900)
    assert (schedule.warmup_iters, schedule.milestones) == (10, (600, 800))
    assert schedule(899) == pytest.approx(0.01)


def test_explicit_iterations_win_over_fractions(tmp_path: Path):
    schedule, _ = _schedule("faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py", "train.max_iter=200",
                            "lr_schedule.max_t=150", "lr_schedule.warmup_iters=40")
    trainer = make_trainer(tmp_path, schedule=schedule, max_iter=200, eval_period=30, eval_fraction=0.5)
    assert (schedule.max_t, schedule.warmup_iters, trainer.eval_period) == (150, 40, 30)
    coco, _ = _schedule("faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py", "train.max_iter=200",
                        "lr_schedule.milestones=[100]", "lr_schedule.warmup_iters=0")
    make_trainer(tmp_path / "coco", schedule=coco, max_iter=200)
    assert (coco.milestones, coco.warmup_iters) == ((100,), 0)
    steps = MultiStepLR(milestones=[7], milestone_fractions=[0.5])
    assert steps.fit_to_run(100, 1) == [] and steps.milestones == (7,)


def test_epoch_schedules_follow_the_run_epochs():
    cosine = CosineLR(by_epoch=True)
    cosine.fit_to_run(max_iter=1000, max_epochs=10)
    assert cosine.max_t == 10 and cosine(999, epoch=10) == 0.0
    steps = MultiStepLR(milestone_fractions=[0.5, 0.75], by_epoch=True)
    steps.fit_to_run(max_iter=1000, max_epochs=8)
    assert steps.milestones == (4, 6)


def test_explicit_positions_the_run_never_reaches_are_reported():
    problems = MultiStepLR(milestones=[150, 300], warmup_iters=250).fit_to_run(200, 1)
    assert any("warmup_iters=250" in p and "200 iterations" in p for p in problems)
    assert any("[300]" in p for p in problems)
    [late] = PolynomialLR(max_t=1000).fit_to_run(200, 1)
    assert "max_t=1000" in late and "above its floor" in late


def test_a_schedule_left_to_the_run_cannot_be_used_unfitted():
    with pytest.raises(RuntimeError, match="fit_to_run"):
        CosineLR()(0)
    with pytest.raises(RuntimeError, match="fit_to_run"):
        MultiStepLR(milestone_fractions=[0.5])(0)
    with pytest.raises(ValueError, match="milestones"):
        MultiStepLR()
    with pytest.raises(ValueError, match="warmup_fraction"):
        CosineLR(max_t=10, warmup_fraction=1.5)
    assert math.isclose(CosineLR(max_t=100)(50), 0.5)
