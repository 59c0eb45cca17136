"""detkit.utils.checkpoint: every bad file is one CheckpointError naming it; atomic writes; loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from detkit.utils import checkpoint as ckpt
from detkit.utils.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    load_weights,
    read_checkpoint,
    read_state_dict,
    save_checkpoint,
)


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def leave_a_mark(path: str) -> None:
    Path(path).touch()


class RunsCode:
    """Unpickling this would call :func:`leave_a_mark` on ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (leave_a_mark, (str(self.marker),))


def test_round_trip_of_a_detkit_checkpoint(tmp_path: Path) -> None:
    state = small_model().state_dict()
    path = save_checkpoint({"model": state, "iteration": 7, "meta": {"classes": ["a"]}}, tmp_path / "sub" / "m.pth")
    assert path == tmp_path / "sub" / "m.pth"
    checkpoint = read_checkpoint(path)
    assert checkpoint["iteration"] == 7 and checkpoint["meta"] == {"classes": ["a"]}
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_missing_file_is_a_file_not_found_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError) as caught:
        read_checkpoint(tmp_path / "nowhere.pth")
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, CheckpointError)
    assert f"checkpoint not found: {tmp_path / 'nowhere.pth'}" == one_line(caught)
    with pytest.raises(CheckpointError, match="is not a file"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("name, content, reason", [
    ("empty.pth", b"", "empty"),
    ("random.pth", bytes(range(256)) * 4, "not a torch checkpoint"),
    ("text.pth", b"junk", "not a torch checkpoint"),
])
def test_files_that_are_not_checkpoints(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = one_line(caught)
    assert message.startswith(f"cannot read checkpoint {path}: ") and reason in message


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path: Path, legacy: bool) -> None:
    good = tmp_path / "good.pth"
    torch.save({"model": small_model().state_dict()}, good, _use_new_zipfile_serialization=not legacy)
    data = good.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = one_line(caught)
    assert str(path) in message and "truncated" in message


def test_a_foreign_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": 1}}, protocol=4))
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(path) in one_line(caught) and "not a torch checkpoint" in str(caught.value)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_pickle_that_carries_code_is_refused_without_running_it(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    payload = {"model": {"w": torch.zeros(1)}, "hook": RunsCode(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert not marker.exists()  # weights_only refused it: the __reduce__ call never happened
    message = one_line(caught)
    assert str(path) in message
    if writer == "torch":  # torch's own format names the refused global
        assert "leave_a_mark" in message and "could run code" in message and "weights_only=True" in message


def test_a_checkpoint_without_a_state_dict(tmp_path: Path) -> None:
    path = save_checkpoint({"optimizer": {}, "iteration": 3}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    assert one_line(caught) == f"{path}: no 'model' state dict in the checkpoint (it has: optimizer, iteration)"
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: it holds a list, not a dict"):
        read_checkpoint(tmp_path / "list.pth")
    save_checkpoint({"model": {"w": torch.zeros(1), "step": 3}}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match=r"mixed\.pth: state dict entries that are not tensors: step"):
        read_state_dict(tmp_path / "mixed.pth")


def test_a_state_dict_that_does_not_fit_names_a_few_keys_of_each_kind(tmp_path: Path) -> None:
    state = small_model().state_dict()
    del state["0.bias"]
    state["2.weight"] = torch.zeros(5, 4, 1, 1)
    state.update({f"extra.{i}": torch.zeros(1) for i in range(10)})
    path = save_checkpoint({"model": state}, tmp_path / "other.pth")
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as caught:
        load_weights(model, path, strict=True)
    message = one_line(caught)
    assert message.startswith(f"checkpoint {path} does not fit the model (Sequential): ")
    assert "1 missing key: 0.bias" in message
    assert "10 unexpected keys: extra.0, extra.1" in message and "... and 2 more" in message
    assert "1 shape-mismatched key: 2.weight (checkpoint [5, 4, 1, 1], model [2, 4, 1, 1])" in message
    for key, value in model.state_dict().items():  # a failed strict load changes nothing
        assert torch.equal(value, before[key]), key


def test_ddp_prefix_is_dropped_unless_the_module_has_it(tmp_path: Path) -> None:
    source = small_model()
    path = save_checkpoint({"model": {f"module.{k}": v for k, v in source.state_dict().items()}},
                           tmp_path / "ddp.pth")
    raw = load_weights(small_model(), path)  # by default the keys are taken as they are
    assert "0.weight" in raw.missing_keys and "module.0.weight" in raw.unexpected_keys
    target = small_model()
    assert load_weights(target, path, strict=True, drop_ddp_prefix=True).ok
    assert torch.equal(target[0].weight, source[0].weight)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = small_model()

    wrapped = Wrapper()
    assert load_weights(wrapped, path, strict=True, drop_ddp_prefix=True).ok  # its keys are module.*
    assert torch.equal(wrapped.module[0].weight, source[0].weight)


def test_an_in_memory_state_dict_loads_too() -> None:
    source = small_model()
    target = small_model()
    report = load_weights(target, {"model": source.state_dict(), "iteration": 1}, strict=True)
    assert report.ok and str(report.path) == "<state dict>"
    assert torch.equal(target[2].weight, source[2].weight)


def test_atomic_write_leaves_no_temp_file_when_the_write_fails_midway(tmp_path: Path) -> None:
    path = save_checkpoint({"model": {"w": torch.ones(2)}}, tmp_path / "model.pth")
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails after writing has begun
        save_checkpoint({"model": {"w": torch.zeros(2)}, "callback": lambda: None}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))  # the old file is intact


def test_atomic_write_leaves_no_temp_file_when_fsync_fails(tmp_path: Path, monkeypatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="no space left"):
        ckpt.atomic_write_bytes(tmp_path / "data.bin", b"12345")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_opened_is_one_line_naming_it(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint({"model": small_model().state_dict()}, tmp_path / "locked.pth")
    real_open = open

    def no_permission(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_permission)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert one_line(caught) == f"cannot read checkpoint {path}: Permission denied"
