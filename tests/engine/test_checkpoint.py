"""Checkpoints: atomic writes, last-k and best kept, latest lookup, weights_only loading, RNG."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from detkit.engine.checkpoint import Checkpointer, atomic_torch_save, atomic_write_bytes, load_checkpoint
from detkit.engine.rng import capture_rng_state, restore_rng_state
from detkit.utils.checkpoint import CheckpointError


def test_atomic_write_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path):
    path = tmp_path / "ckpt.pth"
    atomic_torch_save({"model": {"w": torch.ones(3)}, "iteration": 1}, path)
    atomic_torch_save({"model": {"w": torch.zeros(3)}, "iteration": 2}, path)
    assert load_checkpoint(path)["iteration"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    atomic_write_bytes(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_keep_last_prunes_old_periodic_checkpoints_only(tmp_path: Path):
    checkpointer = Checkpointer(tmp_path, keep_last=2)
    for iteration in (5, 10, 15, 20):
        checkpointer.save({"iteration": iteration}, checkpointer.periodic_path(iteration))
    checkpointer.save_best({"iteration": 10})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last_checkpoint", "model_0000015.pth", "model_0000020.pth",
                     "model_best.pth"]
    assert checkpointer.latest() == tmp_path / "model_0000020.pth"  # best does not move it
    checkpointer.save({"iteration": 25}, checkpointer.final_path)
    assert checkpointer.latest() == checkpointer.final_path


def test_latest_without_pointer_file_and_in_an_empty_folder(tmp_path: Path):
    checkpointer = Checkpointer(tmp_path / "run", keep_last=0)
    assert checkpointer.latest() is None
    for iteration in (100, 20):
        atomic_torch_save({"iteration": iteration}, checkpointer.periodic_path(iteration))
    assert checkpointer.latest() == checkpointer.periodic_path(100)


class NotATensor:
    pass


def test_loading_refuses_pickled_objects(tmp_path: Path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "thing": NotATensor()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: .*NotATensor"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in the numpy state
    atomic_torch_save({"rng": capture_rng_state()}, tmp_path / "rng.pth")
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pth")["rng"])
    again = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])


def test_a_missing_init_checkpoint_names_the_setting_and_the_file(tmp_path: Path):
    from torch import nn

    from detkit.engine.model_setup import load_init_checkpoint

    with pytest.raises(FileNotFoundError, match=r"train\.init_checkpoint: checkpoint not found: .*nope\.pth") as caught:
        load_init_checkpoint(nn.Linear(2, 2), tmp_path / "nope.pth")
    assert isinstance(caught.value, CheckpointError)
