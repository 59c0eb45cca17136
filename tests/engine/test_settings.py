"""The train section is type-checked from the TrainSettings field types when the config loads,
before the output folder, the model or the data are touched; patience needs what it counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.cli import main as cli_main
from detkit.config import load_config
from detkit.engine import TrainSettings, default_train
from detkit.engine.runner import check_train_config, run_training
from engine_helpers import TOY_CONFIG
from toy_detector import ToyDetector


@pytest.mark.parametrize("key, value, expected", [
    ("checkpoint_period", "5", "train.checkpoint_period must be int, got '5' (str)"),
    ("amp", 3, "train.amp must be bool or 'fp16' or 'bf16', got 3 (int)"),
    ("max_iter", 1.5, "train.max_iter must be int or None, got 1.5 (float)"),
    ("max_iter", True, "train.max_iter must be int or None, got True (bool)"),
    ("clip_grad_norm", "1.0", "train.clip_grad_norm must be float or None, got '1.0' (str)"),
    ("freeze", "backbone", "train.freeze must be list[str], got 'backbone' (str)"),
    ("freeze", ["backbone", 3], "train.freeze must be list[str], got ['backbone', 3] (list)"),
    ("best_mode", "maximum", "train.best_mode must be 'max' or 'min', got 'maximum' (str)"),
    ("progress_bar", "no", "train.progress_bar must be bool, got 'no' (str)"),
    ("tensorboard", 1, "train.tensorboard must be bool, got 1 (int)"),
    ("patience", 2.0, "train.patience must be int or None, got 2.0 (float)"),
    ("ema", {"decay": "high"}, "train.ema.decay must be float, got 'high' (str)"),
    ("ema", 0.99, "train.ema must be None, True, False or a dict"),
])
def test_a_wrong_type_names_the_key_the_type_and_the_value(key, value, expected):
    with pytest.raises(ValueError) as error:
        TrainSettings.from_config({"max_iter": 5, key: value}, source="my_config.py")
    message = str(error.value)
    assert message.startswith(f"my_config.py: {expected}")
    assert "\n" not in message


def test_right_types_pass_and_ints_are_floats_and_tuples_lists(tmp_path: Path):
    settings = TrainSettings.from_config(
        {"max_iter": 5, "clip_grad_norm": 10, "eval_fraction": 1, "freeze": ("backbone",),
         "amp": "bf16", "output_dir": tmp_path, "ema": {"decay": 0.9, "tau": 5}})
    assert settings.freeze == ["backbone"] and settings.output_dir == str(tmp_path)
    assert settings.ema is not None and settings.ema.tau == 5
    assert TrainSettings.from_config({"max_iter": 5, "freeze": None, "hooks": None}).hooks == []
    with pytest.raises(ValueError, match="default_train\\(\\): train.keep_last must be int"):
        default_train(max_iter=10, keep_last="3")


@pytest.mark.parametrize("train, match", [
    ({"patience": 3}, r"train.patience=3 needs train.best_metric"),
    ({"patience": 0, "best_metric": "bbox/AP"}, r"train.patience must be >= 1"),
])
def test_patience_needs_a_metric_and_a_positive_count(train, match):
    with pytest.raises(ValueError, match=match):
        TrainSettings.from_config({"max_iter": 5, **train}, source="c.py")


def test_a_bad_override_fails_before_the_output_folder_or_the_model(tmp_path: Path, monkeypatch):
    def not_built(*args, **kwargs):
        raise AssertionError("the model was built before the train section was checked")

    # An override of the wrong type stops in load_config (detkit.config.override_types); a config
    # that holds one itself (written so, or changed in Python) is caught here, before any work.
    with pytest.raises(ValueError, match=r"override train.checkpoint_period='5': expected int"):
        load_config(TOY_CONFIG, ["train.checkpoint_period='5'"])
    cfg = load_config(TOY_CONFIG)
    cfg.train.checkpoint_period = "5"
    monkeypatch.setattr(ToyDetector, "__init__", not_built)
    with pytest.raises(ValueError, match=r"toy_train.py: train.checkpoint_period must be int, "
                                         r"got '5' \(str\)"):
        run_training(cfg, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_patience_without_an_evaluator_is_a_config_error(tmp_path: Path):
    cfg = load_config(TOY_CONFIG, ["evaluator=None", "train.patience=2"])
    with pytest.raises(ValueError, match=r"toy_train.py: train.best_metric='bbox/AP50' needs an "
                                         r"evaluator, but the config sets evaluator=None"):
        check_train_config(cfg)
    cfg = load_config(TOY_CONFIG, ["evaluator=None", "train.patience=2", "train.best_metric=None"])
    with pytest.raises(ValueError, match=r"train.patience=2 needs train.best_metric"):
        check_train_config(cfg)
    cfg = load_config(TOY_CONFIG, ["train.patience=2"])
    del cfg["dataloader"]["test"]
    cfg["evaluator"] = None
    with pytest.raises(ValueError, match=r"needs an evaluator, but the config has no "
                                         r"dataloader.test"):
        run_training(cfg, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_command_line_reports_a_wrong_type_in_one_line(tmp_path: Path, capsys):
    status = cli_main(["train", str(TOY_CONFIG), "train.max_iter=1.5",
                       "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("detkit train: error: ") and "\n" not in err
    assert "override train.max_iter=1.5: expected int (the config has 30), got float" in err
    assert not (tmp_path / "run").exists()
