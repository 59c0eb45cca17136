"""Helpers of the engine tests: a Trainer on the toy detector, subprocess runs of tools/train.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from detkit.engine import MultiStepLR, TrainSettings, Trainer, build_optimizer, build_train_loader
from detkit.engine.model_setup import freeze_by_prefix
from toy_detector import ToyDataset, ToyDetector

ENGINE_TESTS = Path(__file__).resolve().parent
REPO_ROOT = ENGINE_TESTS.parents[1]
TOY_CONFIG = REPO_ROOT / "tests" / "fixtures" / "configs" / "engine" / "toy_train.py"


def make_trainer(output_dir: Path, *, batch_size: int = 2, dataset_size: int = 12,
                 model: ToyDetector | None = None, optimizer: dict[str, Any] | None = None,
                 schedule: Any = None, evaluate: Any = None, augment: bool = False,
                 num_workers: int = 0, **train: Any) -> Trainer:
    """A Trainer over the toy detector and dataset; ``train`` sets TrainSettings keys."""
    torch.manual_seed(0)
    model = model or ToyDetector()
    settings = TrainSettings.from_config(
        {"max_iter": 6, "output_dir": str(output_dir), "progress_bar": False,
         "checkpoint_period": 0, "device": "cpu", **train})
    freeze_by_prefix(model, settings.freeze)
    opt = build_optimizer(model, **{"name": "SGD", "lr": 0.05, "momentum": 0.9,
                                    "weight_decay": 0.0, **(optimizer or {})})
    loader = build_train_loader(ToyDataset(size=dataset_size, augment=augment),
                                batch_size=batch_size, seed=settings.seed,
                                num_workers=num_workers)
    return Trainer(model, opt, schedule or MultiStepLR(milestones=[100]), loader, settings,
                   evaluate=evaluate)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    """Environment of training subprocesses: importable detkit and toy_detector, one thread
    (equal float summation order in every run), no inherited torchrun variables."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(ENGINE_TESTS),
                                         env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def train_command(output_dir: Path, *overrides: str, resume: str | None = None) -> list[str]:
    """``python tools/train.py toy_train.py ... --output-dir DIR``."""
    command = [sys.executable, str(REPO_ROOT / "tools" / "train.py"), str(TOY_CONFIG),
               *overrides, "--output-dir", str(output_dir)]
    return command + (["--resume", resume] if resume else [])


def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command with the test environment, capturing its output."""
    return subprocess.run(command, env=subprocess_env(), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def load_weights_only(path: Path) -> dict[str, Any]:
    """A checkpoint read the one allowed way."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                        atol: float = 0.0) -> None:
    """Same keys; equal tensors (bit-exact when ``atol`` is 0)."""
    assert a.keys() == b.keys()
    for key in a:
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)
