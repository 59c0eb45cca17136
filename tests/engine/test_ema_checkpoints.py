"""With ``train.ema`` the checkpoints hold the evaluated (EMA) weights under ``model``: evaluating
model_final.pth / model_best.pth from the file gives the trainer's own metrics, ``detkit.load``
(and every loader of ``model``: load_weights, Predictor) gets the EMA model, and resume restores the raw weights from ``model_raw``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import detkit
from detkit.config import load_config
from detkit.engine import evaluate_config, run_training
from detkit.utils.checkpoint import load_weights
from engine_helpers import TOY_CONFIG, assert_same_tensors, load_weights_only
from toy_detector import ToyDetector

OVERRIDES = ["train.max_iter=12", "train.checkpoint_period=0", "train.log_period=1", "model.width=4"]


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ema_run")
    torch.set_num_threads(1)
    trainer = run_training(TOY_CONFIG, output_dir=out, overrides=OVERRIDES)
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == "eval"]
    return trainer, out, evals


def test_the_checkpoints_score_what_training_time_evaluation_scored(ema_run):
    trainer, out, evals = ema_run
    assert [r["iter"] for r in evals] == [10, 12]
    cfg = load_config(TOY_CONFIG, OVERRIDES)
    final = evaluate_config(cfg, out / "model_final.pth", device="cpu", progress=False)
    assert final["bbox/AP50"] == evals[-1]["bbox/AP50"]
    best = evaluate_config(cfg, out / "model_best.pth", device="cpu", progress=False)
    assert best["bbox/AP50"] == trainer.best["value"] == max(r["bbox/AP50"] for r in evals)
    raw = evaluate_config(cfg, model=trainer.unwrapped_model, device="cpu", progress=False)
    assert raw["bbox/AP50"] != final["bbox/AP50"]  # the EMA differs from the raw weights


def test_loading_the_weights_gives_the_ema_model_and_the_raw_weights_stay_for_resume(ema_run):
    trainer, out, _ = ema_run
    checkpoint = load_weights_only(out / "model_final.pth")
    assert checkpoint["meta"]["model_weights"] == "ema"
    assert_same_tensors(checkpoint["model"], trainer.ema.module.state_dict())
    assert_same_tensors(checkpoint["model_raw"], trainer.unwrapped_model.state_dict())
    model = detkit.load(out / "model_final.pth", allowed_modules=["toy_detector"])
    plain = ToyDetector(num_classes=3, width=4)
    load_weights(plain, out / "model_final.pth", strict=True)  # what test, infer and Predictor do
    assert_same_tensors(plain.state_dict(), model.state_dict())
    images = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        got, _ = model(images)
        expected, _ = trainer.ema.module.eval()(images)
        raw, _ = trainer.unwrapped_model.eval()(images)
    assert torch.equal(got[0]["boxes"], expected[0]["boxes"])
    assert not torch.equal(got[0]["boxes"], raw[0]["boxes"])


def test_resume_from_an_ema_checkpoint_continues_the_raw_weights(ema_run, tmp_path: Path):
    trainer, out, _ = ema_run
    resumed = run_training(TOY_CONFIG, output_dir=tmp_path, resume=str(out / "model_final.pth"),
                           overrides=[*OVERRIDES[1:], "train.max_iter=12"])
    assert resumed.iteration == 12  # nothing left to do: the weights are the restored ones
    assert_same_tensors(resumed.unwrapped_model.state_dict(), trainer.unwrapped_model.state_dict())
    assert_same_tensors(resumed.ema.module.state_dict(), trainer.ema.module.state_dict())


def test_without_ema_for_evaluation_the_checkpoint_holds_the_trained_weights(tmp_path: Path):
    trainer = run_training(TOY_CONFIG, output_dir=tmp_path,
                           overrides=[*OVERRIDES, "train.max_iter=3", "train.ema={'decay': 0.9, 'use_for_eval': False}"])
    checkpoint = load_weights_only(tmp_path / "model_final.pth")
    assert "model_raw" not in checkpoint and checkpoint["meta"]["model_weights"] == "trained"
    assert_same_tensors(checkpoint["model"], trainer.unwrapped_model.state_dict())
