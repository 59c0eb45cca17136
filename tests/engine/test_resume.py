"""Kill a training run with SIGKILL after its checkpoint at iteration 10, resume it, and end with
exactly the weights of an uninterrupted run (tools/train.py in subprocesses)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import torch

from engine_helpers import REPO_ROOT, assert_same_tensors, load_weights_only, run, subprocess_env, train_command

# 30 iterations of batch 2 over 24 images (12 per epoch), checkpoints every 5, augmentation on,
# EMA on, evaluation every 10: the crash at iteration 14 resumes mid-epoch from iteration 10.
COMMON = ("train.log_period=1",)


def _popen(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=subprocess_env(), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _iterations(output_dir: Path) -> list[tuple[str, int]]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["type"], r["iter"]) for r in map(json.loads, lines)]


def test_sigkilled_run_resumes_to_identical_weights(tmp_path: Path):
    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    reference = _popen(train_command(reference_dir, *COMMON))
    crashed = _popen(train_command(crashed_dir, *COMMON, "model.kill_at_call=14"))
    try:
        crash_log, _ = crashed.communicate(timeout=120)
        reference_log, _ = reference.communicate(timeout=120)
    finally:
        for process in (reference, crashed):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert reference.returncode == 0, reference_log[-3000:]
    assert crashed.returncode == -signal.SIGKILL, crash_log[-3000:]
    assert (crashed_dir / "last_checkpoint").read_text().strip() == "model_0000010.pth"
    assert not (crashed_dir / "model_final.pth").exists()
    assert ("train", 13) in _iterations(crashed_dir)  # logged after the checkpoint, then killed

    resumed = run(train_command(crashed_dir, *COMMON, resume="auto"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "model_0000010.pth" in resumed.stderr

    expected = load_weights_only(reference_dir / "model_final.pth")
    actual = load_weights_only(crashed_dir / "model_final.pth")
    assert_same_tensors(expected["model"], actual["model"])  # the EMA (what is evaluated)
    assert_same_tensors(expected["model_raw"], actual["model_raw"])  # the trained weights
    assert_same_tensors(expected["ema"]["model"], actual["ema"]["model"])
    for key, state in expected["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], actual["optimizer"]["state"][key]["momentum_buffer"])
    assert expected["best"] == actual["best"]
    assert _iterations(crashed_dir) == _iterations(reference_dir)  # records after 10 replaced

