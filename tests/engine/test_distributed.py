"""Two CPU processes (torchrun, gloo) with batch 1 each step like one process with batch 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from detkit.config import load_config
from detkit.engine.runner import build_trainer
from detkit.utils.distributed import (
    all_reduce_mean, any_true, convert_sync_batchnorm, get_rank, get_world_size, init_distributed,
    is_main_process,
)
from engine_helpers import REPO_ROOT, TOY_CONFIG, assert_same_tensors, free_port, load_weights_only, run

SHORT = ("train.max_iter=8", "train.checkpoint_period=4", "train.eval_period=4")


def test_two_gloo_processes_match_one_process_on_the_combined_batch(tmp_path: Path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()),
                str(REPO_ROOT / "tools" / "train.py"), str(TOY_CONFIG), *SHORT,
                "dataloader.train.batch_size=1", "--output-dir", str(ddp_dir)]
    ddp = run(torchrun, timeout=180)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-4000:]
    # The reference runs in this process: a tolerance, not bit-equality, is asked for.
    cfg = load_config(TOY_CONFIG, [*SHORT, "dataloader.train.batch_size=2"])
    build_trainer(cfg, single_dir).train()

    expected = load_weights_only(single_dir / "model_final.pth")
    actual = load_weights_only(ddp_dir / "model_final.pth")
    assert actual["meta"]["world_size"] == 2 and len(actual["rng"]) == 2
    assert_same_tensors(expected["model"], actual["model"], atol=1e-6)
    assert_same_tensors(expected["ema"]["model"], actual["ema"]["model"], atol=1e-6)
    assert sorted(p.name for p in ddp_dir.glob("*.pth")) == [
        "model_0000004.pth", "model_best.pth", "model_final.pth"]  # rank 0 only, no duplicates


def test_a_stop_asked_on_one_rank_stops_every_rank_after_the_same_step(tmp_path: Path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    config = tmp_path / "stop_on_rank_1.py"
    config.write_text(TOY_CONFIG.read_text() + "\nfrom stop_hooks import StopOnRank\n\n"
                      "train.hooks = [L(StopOnRank)(rank=1, iteration=3)]\n")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), str(REPO_ROOT / "tools" / "train.py"),
                str(config), "train.max_iter=8", "train.eval_period=0",
                "dataloader.train.batch_size=1", "--output-dir", str(tmp_path / "run")]
    ddp = run(torchrun, timeout=180)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-4000:]
    final = load_weights_only(tmp_path / "run" / "model_final.pth")
    assert final["iteration"] == 3 and final["stop_reason"] == "rank 1 asked at iteration 3"
    assert "stopping at iteration 3 of 8: rank 1 asked at iteration 3" in (
        tmp_path / "run" / "log.txt").read_text()


def test_single_process_helpers_answer_rank_zero_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert get_rank() == 0 and get_world_size() == 1 and is_main_process()
    assert all_reduce_mean({"a": 1.5}) == {"a": 1.5}
    assert any_true(True) and not any_true(False)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    assert convert_sync_batchnorm(model) is model  # no process group: left as it is
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            init_distributed("cuda")
