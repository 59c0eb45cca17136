"""Hooks that stop training (Trainer.request_stop), the after-evaluation hook, and early stopping
(train.patience) built on them: a clean end, consistent files, and resume that decides alike."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from detkit.engine.early_stopping import EarlyStopping
from detkit.engine.hooks import Hook
from engine_helpers import assert_same_tensors, load_weights_only, make_trainer
from toy_detector import RecordingHook

# bbox/AP50 at each evaluation (eval_period=2): best at 4, then two evaluations without a gain.
SCORES = {2: 0.1, 4: 0.3, 6: 0.2, 8: 0.25, 10: 0.9, 12: 0.95}


class EvalRecorder(RecordingHook):
    """Also records after_eval calls, and whether model_best.pth existed at that point."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.evals: list[tuple[int, dict[str, float], bool]] = []

    def after_eval(self, trainer: Any, metrics: Any) -> None:
        self.evals.append((trainer.iteration, dict(metrics),
                           (self.folder / "model_best.pth").is_file()))


def scripted_trainer(folder: Path, **train: Any):
    """A trainer whose evaluation returns SCORES at the trainer's iteration."""
    holder: dict[str, Any] = {}
    trainer = make_trainer(folder, evaluate=lambda model: {"bbox/AP50": SCORES[holder["t"].iteration]},
                           **{"max_iter": 12, "eval_period": 2, "best_metric": "bbox/AP50",
                              "log_period": 5, **train})
    holder["t"] = trainer
    return trainer


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_patience_stops_the_run_as_a_normal_end_does(tmp_path: Path, caplog):
    hook = EvalRecorder(tmp_path)
    trainer = scripted_trainer(tmp_path, patience=2, hooks=[hook])
    assert isinstance(trainer.hooks[0], EarlyStopping) and trainer.hooks[1] is hook
    with caplog.at_level(logging.INFO, logger="detkit.engine.trainer"):
        trainer.train()
    assert trainer.iteration == 8
    stop_lines = [r.getMessage() for r in caplog.records if "stopping at iteration" in r.getMessage()]
    assert len(stop_lines) == 1
    assert stop_lines[0].startswith("stopping at iteration 8 of 12: early stopping: bbox/AP50 "
                                    "has not improved (max) for 2 evaluation(s) "
                                    "(train.patience=2); best 0.3 at iteration 4")
    logged = records(tmp_path)
    assert [(r["type"], r["iter"]) for r in logged] == [
        ("eval", 2), ("eval", 4), ("train", 5), ("eval", 6), ("eval", 8), ("train", 8),
        ("stop", 8)]  # the last train record as at an end; no second evaluation at 8
    assert "early stopping" in logged[-1]["reason"]
    final = load_weights_only(tmp_path / "model_final.pth")
    assert final["iteration"] == 8 and final["stop_reason"] == trainer.stop_reason
    assert final["hooks"]["EarlyStopping"]["bad_evaluations"] == 2
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert load_weights_only(tmp_path / "model_best.pth")["iteration"] == 4
    assert hook.calls[-1] == ("after_train", 8)
    assert [(i, m["bbox/AP50"]) for i, m, _ in hook.evals] == [(2, 0.1), (4, 0.3), (6, 0.2),
                                                               (8, 0.25)]
    assert hook.evals[0][2]  # after_eval runs once model_best.pth is written


def test_min_mode_and_an_improvement_resets_the_count(tmp_path: Path):
    in_min_mode = scripted_trainer(tmp_path / "a", patience=1, best_mode="min")
    in_min_mode.train()
    assert in_min_mode.iteration == 4  # 0.1 then 0.3: worse when lower is better
    patient = scripted_trainer(tmp_path / "b", patience=3)
    patient.train()  # two evaluations without a gain (6, 8), then 0.9 at 10 resets the count
    assert patient.iteration == 12 and patient.stop_reason is None
    assert patient.hooks[0].state_dict()["bad_evaluations"] == 0


def test_a_resumed_run_makes_the_same_stop_decision(tmp_path: Path):
    full = scripted_trainer(tmp_path / "full", patience=2, checkpoint_period=6)
    full.train()
    resumed = scripted_trainer(tmp_path / "resumed", patience=2)
    resumed.train(resume=tmp_path / "full" / "model_0000006.pth")  # 1 bad evaluation so far
    assert resumed.iteration == full.iteration == 8
    assert_same_tensors(full.unwrapped_model.state_dict(), resumed.unwrapped_model.state_dict())

    again = scripted_trainer(tmp_path / "full", patience=2)
    again.train(resume=tmp_path / "full" / "model_final.pth")
    assert again.iteration == 8  # out of patience already: stops at once, evaluates nothing new
    assert "restored from the checkpoint" in again.stop_reason
    assert [r["iter"] for r in records(tmp_path / "full") if r["type"] == "eval"] == [2, 4, 6, 8]

    longer = scripted_trainer(tmp_path / "full", patience=4)
    longer.train(resume=tmp_path / "full" / "model_final.pth")
    assert longer.iteration == 12 and longer.stop_reason is None  # patience raised: continues


class StopAt(Hook):
    def __init__(self, where: str, iteration: int = 0) -> None:
        self.where, self.iteration = where, iteration

    def before_train(self, trainer: Any) -> None:
        if self.where == "before_train":
            trainer.request_stop("asked before training")

    def after_step(self, trainer: Any) -> None:
        if self.where == "after_step" and trainer.iteration == self.iteration:
            trainer.request_stop(f"asked at {trainer.iteration}")
            trainer.request_stop("a second reason is ignored")


def test_any_hook_can_stop_and_the_end_stays_complete(tmp_path: Path):
    seen: list[int] = []
    recorder = EvalRecorder(tmp_path / "a")
    trainer = make_trainer(tmp_path / "a", max_iter=10, log_period=2,
                           evaluate=lambda model: seen.append(1) or {"bbox/AP50": 0.5},
                           hooks=[StopAt("after_step", 3), recorder])
    trainer.train()
    assert trainer.iteration == 3 and trainer.stop_reason == "asked at 3"
    assert [i for i, _, _ in recorder.evals] == [3]  # the final evaluation, as at a normal end
    logged = records(tmp_path / "a")
    assert [(r["type"], r["iter"]) for r in logged] == [("train", 2), ("train", 3), ("stop", 3),
                                                         ("eval", 3)]
    assert load_weights_only(tmp_path / "a" / "model_final.pth")["stop_reason"] == "asked at 3"
    assert recorder.calls[-1] == ("after_train", 3)

    early = make_trainer(tmp_path / "b", max_iter=10, hooks=[StopAt("before_train")])
    early.train()
    assert early.iteration == 0 and early.stop_reason == "asked before training"
    assert load_weights_only(tmp_path / "b" / "model_final.pth")["iteration"] == 0


def test_a_request_after_the_loop_changes_nothing(tmp_path: Path):
    class StopLate(Hook):
        def after_train(self, trainer: Any) -> None:
            trainer.request_stop("too late")

    trainer = make_trainer(tmp_path, max_iter=2, hooks=[StopLate()])
    trainer.train()
    assert trainer.stop_reason is None and trainer.iteration == 2
    assert load_weights_only(tmp_path / "model_final.pth")["stop_reason"] is None


def test_early_stopping_counts(tmp_path: Path):
    class Fake:
        iteration = 0
        reason = None

        def request_stop(self, reason: str) -> None:
            self.reason = reason

    def run(hook: EarlyStopping, values: list[float]) -> int | None:
        fake = Fake()
        for step, value in enumerate(values, start=1):
            fake.iteration = step
            hook.after_eval(fake, {"loss": value})
            if fake.reason:
                return step
        return None

    assert run(EarlyStopping("loss", 2, mode="min"), [3.0, 2.0, 2.5, 1.0, 1.5, 1.2]) == 6
    assert run(EarlyStopping("loss", 1, mode="min", min_delta=0.5), [3.0, 2.8]) == 2
    assert run(EarlyStopping("loss", 1, mode="max"), [1.0, 1.0]) == 2  # equal is no gain
    assert run(EarlyStopping("loss", 2, mode="max"), [float("nan"), 1.0, 2.0, 3.0]) is None
    hook = EarlyStopping("loss", 3)
    run(hook, [1.0, 0.5])
    restored = EarlyStopping("loss", 3)
    restored.load_state_dict(hook.state_dict())
    assert restored.state_dict() == hook.state_dict() == {
        "metric": "loss", "mode": "max", "best": 1.0, "best_iteration": 1, "bad_evaluations": 1}
    with pytest.raises(KeyError, match="early stopping: metric 'AP' is not among the "
                                       "evaluator's metrics: loss"):
        EarlyStopping("AP", 2).after_eval(Fake(), {"loss": 1.0})
    for bad in ({"patience": 0}, {"patience": 1.5}, {"mode": "best"}, {"min_delta": -1.0}):
        with pytest.raises(ValueError, match="EarlyStopping: "):
            EarlyStopping(**{"metric": "loss", "patience": 2, **bad})


def test_patience_needs_an_evaluator_in_the_trainer(tmp_path: Path):
    with pytest.raises(ValueError, match=r"train.best_metric='bbox/AP50' needs an evaluator"):
        make_trainer(tmp_path, patience=2, best_metric="bbox/AP50")
