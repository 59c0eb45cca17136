"""A run's folder after a crash: ``--resume auto`` skips a truncated newest checkpoint (with a
warning naming it) and resumes from the newest intact one; the temporary files of a write that
was killed are removed by the next run and never taken for checkpoints."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from detkit.engine import run_training
from detkit.engine.checkpoint import Checkpointer
from detkit.engine.runner import resolve_resume
from detkit.utils.checkpoint import CheckpointError, save_checkpoint, temp_file_target
from engine_helpers import TOY_CONFIG, assert_same_tensors, load_weights_only

RUN = ["train.max_iter=12", "train.checkpoint_period=5", "train.keep_last=0", "train.eval_period=0",
       "train.log_period=5"]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def training_state(iteration: int) -> dict:
    return {"model": {"w": torch.full((2,), float(iteration))}, "optimizer": {}, "iteration": iteration,
            "rng": []}


def test_resume_auto_skips_a_truncated_newest_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    out = tmp_path / "run"
    torch.set_num_threads(1)
    run_training(TOY_CONFIG, output_dir=out, overrides=RUN)
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    uninterrupted = load_weights_only(out / "model_final.pth")
    # A crash that tore the files written at iterations 10 and 12 (the pointer names model_final.pth).
    truncate(out / "model_final.pth")
    truncate(out / "model_0000010.pth")

    caplog.set_level(logging.INFO)
    trainer = run_training(TOY_CONFIG, output_dir=out, overrides=RUN, resume="auto")
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and r.getMessage().startswith("--resume auto: skipping")]
    assert skipped == [f"--resume auto: skipping {out / name}: truncated or corrupt torch file (its zip "
                       "archive is incomplete)" for name in ("model_final.pth", "model_0000010.pth")]
    assert any(r.getMessage() == f"resumed from {out / 'model_0000005.pth'} at iteration 5 (epoch 0)"
               for r in caplog.records) or "model_0000005.pth" in caplog.text
    assert trainer.iteration == 12
    resumed = load_weights_only(out / "model_final.pth")  # rewritten, whole
    assert resumed["iteration"] == 12
    assert_same_tensors(resumed["model"], uninterrupted["model"])


def test_resume_auto_with_every_checkpoint_unreadable_stops_instead_of_starting_over(tmp_path: Path):
    checkpointer = Checkpointer(tmp_path)
    for iteration in (5, 10):
        checkpointer.save(training_state(iteration), checkpointer.periodic_path(iteration))
        truncate(checkpointer.periodic_path(iteration))
    with pytest.raises(CheckpointError) as caught:
        resolve_resume("auto", tmp_path)
    assert str(caught.value).startswith(f"--resume auto: no intact checkpoint in {tmp_path} (unreadable: "
                                        "model_0000010.pth, model_0000005.pth)")
    assert resolve_resume("auto", tmp_path / "empty") is None  # nothing at all: a fresh start


def test_a_checkpoint_that_is_not_a_training_checkpoint_is_skipped_too(tmp_path: Path):
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(training_state(5), checkpointer.periodic_path(5))
    checkpointer.save({"model": {"w": torch.zeros(1)}}, checkpointer.final_path)  # weights only
    assert checkpointer.latest() == checkpointer.final_path
    assert checkpointer.latest_intact() == checkpointer.periodic_path(5)


def stale_temp_file(folder: Path, target: str) -> Path:
    """What a process killed between writing and renaming leaves (the atomic writer's naming)."""
    path = folder / f".{target}.k3x_9a0q.tmp"
    path.write_bytes(b"PK\x03\x04 half a checkpoint")
    assert temp_file_target(path.name) == target
    return path


def test_the_atomic_writer_names_its_temp_files_as_temp_file_target_reads_them(tmp_path: Path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save_checkpoint({"w": torch.zeros(1)}, tmp_path / "model_0000005.pth")
    [(temp_name, target)] = seen
    assert temp_file_target(temp_name) == target == "model_0000005.pth"
    assert temp_file_target("model_0000005.pth") is None and temp_file_target(".hidden.tmp") is None


def test_stale_temp_files_are_removed_by_the_next_checkpointer_and_never_listed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(training_state(5), checkpointer.periodic_path(5))
    stale = [stale_temp_file(tmp_path, name) for name in
             ("model_0000010.pth", "model_final.pth", "model_best.pth", "last_checkpoint")]
    theirs = stale_temp_file(tmp_path, "notes.txt")  # not a checkpoint file: not ours to delete
    assert checkpointer.periodic_checkpoints() == [(5, checkpointer.periodic_path(5))]
    assert checkpointer.latest() == checkpointer.latest_intact() == checkpointer.periodic_path(5)
    assert checkpointer.stale_temp_files() == sorted(stale)

    caplog.set_level(logging.WARNING)
    Checkpointer(tmp_path)
    assert not any(path.exists() for path in stale) and theirs.exists()
    assert sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == sorted(
        f"removed stale temporary file {path} (a checkpoint write was interrupted)" for path in stale)
    assert Checkpointer(tmp_path, remove_stale=False).stale_temp_files() == []


def test_a_run_resumed_after_a_kill_inside_a_write_leaves_no_temp_file(tmp_path: Path):
    out = tmp_path / "run"
    torch.set_num_threads(1)
    run_training(TOY_CONFIG, output_dir=out, overrides=[*RUN, "train.max_iter=5"])
    stale = stale_temp_file(out, "model_0000010.pth")
    run_training(TOY_CONFIG, output_dir=out, overrides=RUN, resume="auto")
    assert not stale.exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert load_weights_only(out / "model_final.pth")["iteration"] == 12
