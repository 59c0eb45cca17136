"""train.tensorboard: the scalars of metrics.jsonl as TensorBoard events beside it; without the
tensorboard package, a one-line error naming the key and the install command, before any work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from detkit.cli import main as cli_main
from detkit.engine.tensorboard_log import TensorBoardMissingError, require_tensorboard
from engine_helpers import TOY_CONFIG, make_trainer


def hide_tensorboard(monkeypatch) -> None:
    """Make ``import tensorboard`` fail as it does where the package is not installed."""
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")
                 or n.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


def test_the_events_hold_the_scalars_of_the_metrics_log(tmp_path: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(tmp_path, max_iter=6, log_period=2, eval_period=3, tensorboard=True,
                           evaluate=lambda model: {"bbox/AP50": 0.25, "bbox/AP": 0.125})
    trainer.train()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["type"] == "train"]
    tags = set(events.Tags()["scalars"])
    for name in ("total_loss", "loss_box", "loss_cls", "lr", "time", "data_time"):
        assert f"train/{name}" in tags
        scalars = events.Scalars(f"train/{name}")
        assert [s.step for s in scalars] == [r["iter"] for r in train] == [2, 4, 6]
        assert [s.value for s in scalars] == pytest.approx([r[name] for r in train], rel=1e-6)
    evals = events.Scalars("eval/bbox/AP50")
    assert [(s.step, s.value) for s in evals] == [(3, 0.25), (6, 0.25)]
    assert [s.value for s in events.Scalars("eval/bbox/AP")] == [0.125, 0.125]


def test_a_resumed_run_hides_the_events_past_its_checkpoint(tmp_path: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = make_trainer(tmp_path, max_iter=6, log_period=2, checkpoint_period=2,
                         keep_last=0, tensorboard=True)
    first.train()
    resumed = make_trainer(tmp_path, max_iter=6, log_period=2, tensorboard=True)
    resumed.train(resume=tmp_path / "model_0000002.pth")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [s.step for s in events.Scalars("train/total_loss")] == [2, 4, 6]  # no duplicates


def test_off_by_default(tmp_path: Path):
    make_trainer(tmp_path, max_iter=1).train()
    assert not (tmp_path / "tensorboard").exists()


def test_without_the_package_the_error_names_the_key_and_the_install(tmp_path: Path,
                                                                     monkeypatch):
    hide_tensorboard(monkeypatch)
    with pytest.raises(TensorBoardMissingError) as error:
        require_tensorboard()
    message = str(error.value)
    assert message.startswith("train.tensorboard=True needs the tensorboard package")
    assert "pip install tensorboard" in message and "\n" not in message
    assert isinstance(error.value, ImportError) and isinstance(error.value, ValueError)
    with pytest.raises(TensorBoardMissingError):
        make_trainer(tmp_path / "api", max_iter=1, tensorboard=True)
    make_trainer(tmp_path / "off", max_iter=1).train()  # not asked for: no error


def test_without_the_package_the_command_stops_before_any_work(tmp_path: Path, monkeypatch,
                                                                capsys):
    hide_tensorboard(monkeypatch)
    status = cli_main(["train", str(TOY_CONFIG), "train.tensorboard=True", "train.max_iter=2",
                       "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert err.startswith("detkit train: error: train.tensorboard=True needs the tensorboard")
    assert "pip install tensorboard" in err
    assert not (tmp_path / "run").exists()
