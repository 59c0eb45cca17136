"""Trainer on the toy detector: logs, hooks, accumulation, clipping, NaN stop, freezing, EMA,
best checkpoint, fine-tuning, settings errors, AMP on the CPU."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

from detkit.config import load_config
from detkit.engine import NonFiniteLossError, TrainSettings, default_train
from detkit.engine.model_setup import freeze_by_prefix, load_init_checkpoint
from detkit.engine.runner import build_trainer, resolve_resume
from engine_helpers import TOY_CONFIG, assert_same_tensors, load_weights_only, make_trainer
from toy_detector import RecordingHook, ToyDetector


def test_training_writes_metrics_log_checkpoints_and_calls_hooks(tmp_path: Path):
    hook = RecordingHook()
    trainer = make_trainer(tmp_path, max_iter=6, log_period=2, checkpoint_period=3,
                           hooks=[hook])
    before = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    trainer.train()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [2, 4, 6]
    for key in ("epoch", "lr", "loss_box", "loss_cls", "total_loss", "time", "data_time"):
        assert key in records[0]
    assert records[0]["total_loss"] == pytest.approx(records[0]["loss_box"] + records[0]["loss_cls"])
    assert [r["epoch"] for r in records] == [0, 0, 0]  # 12 images / batch 2: 6 steps per epoch
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000003.pth",
                                                             "model_final.pth"]
    final = load_weights_only(tmp_path / "model_final.pth")
    assert final["iteration"] == 6 and final["epoch"] == 1  # the epoch of the next batch
    assert not torch.equal(final["model"]["cls_head.weight"], before["cls_head.weight"])
    assert hook.calls[0] == ("before_train", 0)
    assert [i for name, i in hook.calls if name == "after_step"] == [1, 2, 3, 4, 5, 6]
    assert hook.calls[-1] == ("after_train", 6)


def test_grad_accumulation_equals_one_larger_batch(tmp_path: Path):
    accumulated = make_trainer(tmp_path / "a", batch_size=1, grad_accum_steps=2, max_iter=4)
    accumulated.train()
    large = make_trainer(tmp_path / "b", batch_size=2, grad_accum_steps=1, max_iter=4)
    large.train()
    assert_same_tensors(accumulated.unwrapped_model.state_dict(),
                        large.unwrapped_model.state_dict(), atol=1e-6)


def test_max_epochs_counts_optimizer_steps(tmp_path: Path):
    trainer = make_trainer(tmp_path, batch_size=2, dataset_size=12, grad_accum_steps=2,
                           max_iter=None, max_epochs=2)
    assert trainer.max_iter == 2 * 6 // 2


def test_gradient_clipping_bounds_the_step(tmp_path: Path):
    trainer = make_trainer(tmp_path, max_iter=1, clip_grad_norm=1e-3,
                           optimizer={"momentum": 0.0, "lr": 1.0})
    before = [p.detach().clone() for p in trainer.unwrapped_model.parameters()]
    trainer.train()
    after = list(trainer.unwrapped_model.parameters())
    step = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    assert 0 < step <= 1e-3 * (1 + 1e-5)


def test_non_finite_loss_stops_with_the_terms_and_keeps_the_last_checkpoint(tmp_path: Path):
    trainer = make_trainer(tmp_path, model=ToyDetector(nan_at_call=8), max_iter=20,
                           checkpoint_period=5)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.train()
    message = str(error.value)
    assert "iteration 8" in message and "loss_box=nan" in message and "loss_cls=" in message
    assert "model_0000005.pth" in message
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000005.pth"]
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000005.pth"
    good = load_weights_only(tmp_path / "model_0000005.pth")
    assert good["iteration"] == 5
    assert all(torch.isfinite(v).all() for v in good["model"].values())


def test_freeze_by_prefix_keeps_weights_and_norm_statistics(tmp_path: Path):
    trainer = make_trainer(tmp_path, model=ToyDetector(norm=True), freeze=["backbone.1"],
                           max_iter=3)
    frozen_bn = trainer.unwrapped_model.backbone[1]
    before = {k: v.clone() for k, v in frozen_bn.state_dict().items()}
    conv_before = trainer.unwrapped_model.backbone[0].weight.detach().clone()
    trainer.train()
    assert_same_tensors(before, frozen_bn.state_dict())
    assert not torch.equal(conv_before, trainer.unwrapped_model.backbone[0].weight)
    with pytest.raises(ValueError, match=r"train.freeze: prefix 'neck' matches no module"):
        freeze_by_prefix(ToyDetector(), ["neck"])


def test_ema_is_checkpointed_and_evaluated(tmp_path: Path):
    seen = []

    def evaluate(model):
        seen.append(model)
        return {"bbox/AP50": 0.5}

    trainer = make_trainer(tmp_path, max_iter=3, ema={"decay": 0.5, "tau": 1.0},
                           evaluate=evaluate)
    trainer.train()
    assert seen == [trainer.ema.module]
    final = load_weights_only(tmp_path / "model_final.pth")
    assert final["ema"]["updates"] == 3
    assert_same_tensors(final["ema"]["model"], trainer.ema.module.state_dict())
    # "model" holds the evaluated (EMA) weights, "model_raw" the trained ones, which differ.
    assert_same_tensors(final["model"], trainer.ema.module.state_dict())
    assert_same_tensors(final["model_raw"], trainer.unwrapped_model.state_dict())
    assert not torch.equal(final["ema"]["model"]["cls_head.weight"],
                           final["model_raw"]["cls_head.weight"])


def test_best_checkpoint_follows_the_metric(tmp_path: Path):
    values = iter([0.1, 0.3, 0.2])
    trainer = make_trainer(tmp_path, max_iter=6, eval_period=2, best_metric="bbox/AP50",
                           evaluate=lambda model: {"bbox/AP50": next(values)})
    trainer.train()
    best = load_weights_only(tmp_path / "model_best.pth")
    assert best["iteration"] == 4
    assert best["best"] == {"name": "bbox/AP50", "value": 0.3, "iteration": 4}
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["bbox/AP50"] for r in evals if r["type"] == "eval"] == [0.1, 0.3, 0.2]
    wrong = make_trainer(tmp_path / "w", max_iter=2, best_metric="bbox/AP",
                         evaluate=lambda model: {"bbox/AP50": 1.0})
    with pytest.raises(KeyError, match="train.best_metric='bbox/AP'.*bbox/AP50"):
        wrong.train()


def test_fine_tuning_loads_matching_tensors_and_names_the_rest(tmp_path: Path):
    trainer = make_trainer(tmp_path, max_iter=2)
    trainer.train()
    model = ToyDetector(num_classes=5)
    report = load_init_checkpoint(model, tmp_path / "model_final.pth")
    assert [key for key, _, _ in report.shape_mismatches] == ["cls_head.weight", "cls_head.bias"]
    assert torch.equal(model.backbone[0].weight, trainer.unwrapped_model.backbone[0].weight)


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path: Path):
    full = make_trainer(tmp_path / "full", max_iter=8, augment=True, ema=True)
    full.train()
    part = make_trainer(tmp_path / "part", max_iter=5, augment=True, ema=True)
    part.train()
    resumed = make_trainer(tmp_path / "part", max_iter=8, augment=True, ema=True)
    resumed.train(resume=tmp_path / "part" / "model_final.pth")
    assert_same_tensors(full.unwrapped_model.state_dict(), resumed.unwrapped_model.state_dict())
    assert_same_tensors(full.ema.module.state_dict(), resumed.ema.module.state_dict())


def test_amp_on_cpu_falls_back_with_a_log_line_and_bf16_runs(tmp_path: Path, caplog):
    with caplog.at_level(logging.INFO, logger="detkit.engine.trainer"):
        trainer = make_trainer(tmp_path / "fp16", max_iter=1, amp=True)
    assert trainer.scaler is None and trainer.autocast_dtype is None
    assert "float16 mixed precision needs CUDA" in caplog.text
    bf16 = make_trainer(tmp_path / "bf16", max_iter=2, amp="bf16")
    bf16.train()
    assert all(torch.isfinite(p).all() for p in bf16.unwrapped_model.parameters())


@pytest.mark.parametrize("train, match", [
    ({}, "exactly one of train.max_iter and train.max_epochs"),
    ({"max_iter": 5, "max_epochs": 1}, "exactly one"),
    ({"max_iter": 5, "checkpoint_perod": 10}, "no key 'checkpoint_perod'; did you mean 'checkpoint_period'"),
    ({"max_iter": 5, "amp": "fp8"}, "train.amp"),
    ({"max_iter": 5, "grad_accum_steps": 0}, "train.grad_accum_steps"),
    ({"max_iter": 5, "ema": {"decay": 0.9, "taux": 1}}, "train.ema has unknown keys"),
])
def test_bad_train_settings_name_the_key_and_file(train, match):
    with pytest.raises(ValueError, match=match) as error:
        TrainSettings.from_config(train, source="my_config.py")
    assert "my_config.py" in str(error.value)


def test_build_trainer_from_config_and_clear_config_errors(tmp_path: Path):
    cfg = load_config(TOY_CONFIG, ["train.max_iter=2", "train.hooks=[]"])
    trainer = build_trainer(cfg, tmp_path)
    assert trainer.max_iter == 2 and trainer.evaluate_fn is not None
    assert (tmp_path / "config.py").is_file()
    bad = load_config(TOY_CONFIG, ["optimizer.name='Adagrad'"])
    with pytest.raises(Exception, match=r"optimizer.*optimizer.name='Adagrad'"):
        build_trainer(bad, tmp_path / "bad")
    del bad["lr_schedule"]
    with pytest.raises(ValueError, match=r"toy_train.py: missing top-level config key\(s\) lr_schedule"):
        build_trainer(bad, tmp_path / "bad")
    not_a_schedule = load_config(TOY_CONFIG, ["lr_schedule='cosine'"])
    with pytest.raises(TypeError, match=r"'lr_schedule' in .*toy_train.py must build an LRSchedule.*'cosine'"):
        build_trainer(not_a_schedule, tmp_path / "bad")


def test_default_train_lists_every_key_so_each_can_be_overridden(tmp_path: Path):
    train = default_train(max_iter=10, eval_period=5)
    assert set(train) == {f.name for f in dataclasses.fields(TrainSettings)}
    assert train.eval_period == 5 and train.log_period == 20
    cfg = load_config(TOY_CONFIG, ["train.grad_accum_steps=2", "train.freeze=['backbone.0']"])
    trainer = build_trainer(cfg, tmp_path)
    assert trainer.settings.grad_accum_steps == 2
    assert not trainer.unwrapped_model.backbone[0].weight.requires_grad
    with pytest.raises(ValueError, match="did you mean 'max_iter'"):
        default_train(max_iters=3)


def test_resume_argument(tmp_path: Path):
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None  # nothing to resume: start fresh
    trainer = make_trainer(tmp_path, max_iter=2, checkpoint_period=1)
    trainer.train()
    assert resolve_resume("auto", tmp_path) == tmp_path / "model_final.pth"
    assert resolve_resume(str(tmp_path / "model_0000001.pth"), tmp_path).is_file()
    with pytest.raises(FileNotFoundError, match="--resume nowhere.pth"):
        resolve_resume("nowhere.pth", tmp_path)
    torch.save({"model": trainer.unwrapped_model.state_dict()}, tmp_path / "weights.pth")
    with pytest.raises(KeyError, match="not a training checkpoint.*init_checkpoint"):
        make_trainer(tmp_path / "again", max_iter=2).train(resume=tmp_path / "weights.pth")


def test_every_checkpoint_carries_the_model_config_and_class_names(tmp_path: Path):
    from detkit.config import config_from_data, instantiate
    from detkit.model_zoo import load

    cfg = load_config(TOY_CONFIG, [f"train.output_dir='{tmp_path}'", "train.max_iter=6", "model.width=4"])
    trainer = build_trainer(cfg)
    trainer.train()
    for name in ("model_0000005.pth", "model_final.pth", "model_best.pth"):
        checkpoint = load_weights_only(tmp_path / name)
        assert checkpoint["model_config"] == {"_target_": "toy_detector:ToyDetector", "num_classes": 3, "width": 4}
        assert checkpoint["class_names"] == ["class0", "class1", "class2"]
    rebuilt = instantiate(config_from_data(checkpoint["model_config"], allowed_modules=["toy_detector"]))
    assert_same_tensors(rebuilt.state_dict() | checkpoint["model"], checkpoint["model"])
    model = load(tmp_path / "model_final.pth", allowed_modules=["toy_detector"])
    assert_same_tensors(model.state_dict(), trainer.eval_model().state_dict())  # the EMA: what was evaluated


def test_without_an_evaluator_section_the_engine_builds_one_from_the_test_dataset(tmp_path: Path):
    cfg = load_config(TOY_CONFIG, [f"train.output_dir='{tmp_path / 'a'}'", "train.max_iter=2", "train.ema=None",
                                   "train.best_metric='bbox/AP50'"])
    del cfg["evaluator"]
    trainer = build_trainer(cfg)
    trainer.train()
    metrics = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if m.get("type") == "eval"]
    assert evals and "bbox/AP50" in evals[-1] and "bbox/AP-class1" in evals[-1]  # COCO AP, the dataset's names

    off = load_config(TOY_CONFIG, [f"train.output_dir='{tmp_path / 'b'}'", "train.max_iter=2", "evaluator=None",
                                   "train.best_metric=None", "train.eval_period=0"])
    assert build_trainer(off).evaluate_fn is None
