"""Every entry point that reads a checkpoint (``detkit test|infer|train|convert``, train's
``train.init_checkpoint`` and ``--resume``, ``detkit.load``, ``Predictor.from_config``,
``read_checkpoint``, ``load_weights``) answers a truncated, foreign or code-carrying file with one
line that names the file (exit status 2 on the command line, no traceback), and never runs code
from it."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import detkit
from detkit.apis.predictor import Predictor
from detkit.cli import main as cli_main
from detkit.engine import run_training
from detkit.engine.model_setup import load_init_checkpoint
from detkit.utils.checkpoint import CheckpointError, load_weights, read_checkpoint
from engine_helpers import REPO_ROOT, TOY_CONFIG
from toy_detector import ToyDetector

IMAGE = REPO_ROOT / "tests" / "fixtures" / "images" / "dog.jpg"
MARKER = "code_ran"  # the code-carrying files would create this file next to themselves
SHORT_RUN = ["train.max_iter=2", "train.checkpoint_period=1", "train.eval_period=0", "train.log_period=1"]


class RunsShell:
    """Unpickling this runs ``touch MARKER`` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) training checkpoint of the toy config."""
    out = tmp_path_factory.mktemp("toy_run")
    torch.set_num_threads(1)
    run_training(TOY_CONFIG, output_dir=out, overrides=SHORT_RUN)
    return out / "model_final.pth"


def _truncated(path: Path, good: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _truncated_legacy(path: Path, good: Path) -> None:
    torch.save(torch.load(good, weights_only=True), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text(path: Path, good: Path) -> None:
    path.write_text("model: yolov3\nlr: 0.01\n")


def _numpy(path: Path, good: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((3, 4), dtype=np.float32))


def _zip(path: Path, good: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/readme.txt", "not a checkpoint")


def _other_model(path: Path, good: Path) -> None:
    torch.save({"model": nn.Conv2d(2, 5, 1).state_dict()}, path)


def _code_torch(path: Path, good: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1)}, "x": RunsShell(path.parent / MARKER)}, path)


def _code_pickle(path: Path, good: Path) -> None:
    path.write_bytes(pickle.dumps({"model": RunsShell(path.parent / MARKER)}))


BAD_FILES: dict[str, Callable[[Path, Path], None]] = {
    "truncated": _truncated, "truncated_legacy": _truncated_legacy, "text": _text, "numpy": _numpy,
    "zip": _zip, "other_model": _other_model, "code_torch": _code_torch, "code_pickle": _code_pickle,
}

# Entry points: a command line (run in-process; the exit status and stderr are checked) or a
# Python call (must raise a CheckpointError).
CLI_ENTRY_POINTS: dict[str, Callable[[Path, Path], list[str]]] = {
    "detkit test": lambda bad, tmp: ["test", str(TOY_CONFIG), str(bad), "--out", str(tmp / "eval"),
                                     "--no-progress", "--device", "cpu"],
    "detkit infer": lambda bad, tmp: ["infer", str(TOY_CONFIG), str(bad), str(IMAGE), "--out",
                                      str(tmp / "infer"), "--no-progress", "--device", "cpu"],
    "detkit train init_checkpoint": lambda bad, tmp: [
        "train", str(TOY_CONFIG), f"train.init_checkpoint={bad}", *SHORT_RUN, "--output-dir", str(tmp / "run")],
    "detkit train --resume": lambda bad, tmp: [
        "train", str(TOY_CONFIG), *SHORT_RUN, "--resume", str(bad), "--output-dir", str(tmp / "run")],
    "detkit convert": lambda bad, tmp: ["convert", "--from", "torchvision", "--arch", "fasterrcnn_resnet50_fpn",
                                        str(bad), str(tmp / "converted.pth")],
}
PY_ENTRY_POINTS: dict[str, Callable[[Path], object]] = {
    "detkit.load": lambda bad: detkit.load(bad, allowed_modules=["toy_detector"]),
    "Predictor.from_config": lambda bad: Predictor.from_config(TOY_CONFIG, bad, device="cpu"),
    "read_checkpoint": read_checkpoint,
    "load_weights": lambda bad: load_weights(ToyDetector(), bad, strict=True),
    "load_init_checkpoint": lambda bad: load_init_checkpoint(ToyDetector(), bad),
}


def _make_bad_file(kind: str, tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "files" / f"{kind}.pth"
    path.parent.mkdir()
    BAD_FILES[kind](path, good)
    return path


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.parametrize("entry", list(CLI_ENTRY_POINTS))
def test_a_bad_checkpoint_on_the_command_line_is_one_line_naming_it(
        entry: str, kind: str, tmp_path: Path, training_checkpoint: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = _make_bad_file(kind, tmp_path, training_checkpoint)
    status = cli_main(CLI_ENTRY_POINTS[entry](bad, tmp_path))
    err = capsys.readouterr().err
    command = " ".join(entry.split()[:2])
    assert status == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]  # training logs its set-up lines first
    assert last.startswith(f"{command}: error: ") and str(bad) in last, last
    assert not (bad.parent / MARKER).exists()
    assert not (tmp_path / "converted.pth").exists() and not (tmp_path / "infer" / "predictions.json").exists()


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.parametrize("entry", list(PY_ENTRY_POINTS))
def test_a_bad_checkpoint_in_python_is_one_checkpoint_error_naming_it(
        entry: str, kind: str, tmp_path: Path, training_checkpoint: Path) -> None:
    if entry == "read_checkpoint" and kind == "other_model":
        pytest.skip("readable: only a loader can tell that it belongs to another model")
    bad = _make_bad_file(kind, tmp_path, training_checkpoint)
    with pytest.raises(CheckpointError) as caught:
        PY_ENTRY_POINTS[entry](bad)
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message, message
    assert not (bad.parent / MARKER).exists()


@pytest.mark.parametrize("kind, says", [
    ("text", "a text file, not a torch checkpoint"),
    ("numpy", "a NumPy .npy array file, not a torch checkpoint"),
    ("zip", "a zip archive that is not a torch checkpoint (it holds weights/readme.txt)"),
    ("truncated", "truncated or corrupt torch file"),
    ("truncated_legacy", "truncated"),
    ("code_torch", "it holds a pickled Python object (posix.system), refused: unpickling it could run code"),
])
def test_the_message_says_what_the_file_is(kind: str, says: str, tmp_path: Path,
                                            training_checkpoint: Path) -> None:
    bad = _make_bad_file(kind, tmp_path, training_checkpoint)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(bad)
    assert str(caught.value).startswith(f"cannot read checkpoint {bad}: ")
    assert says in str(caught.value)
    assert "If you are seeing this error" not in str(caught.value)  # torch's advice is cut


def test_init_checkpoint_of_another_model_is_refused_not_silently_ignored(tmp_path: Path) -> None:
    """Before: not one tensor loaded, a warning, and training went on from scratch."""
    path = tmp_path / "other.pth"
    _other_model(path, path)
    model = ToyDetector()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(CheckpointError) as caught:
        load_init_checkpoint(model, path)
    assert str(caught.value).startswith(f"train.init_checkpoint: nothing in {path} fits the model (ToyDetector): ")
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    # a partial fit (another number of classes) still starts from what fits
    report = load_init_checkpoint(ToyDetector(num_classes=5), _toy_weights(tmp_path))
    assert report.loaded_keys and [key for key, _, _ in report.shape_mismatches] == [
        "cls_head.weight", "cls_head.bias"]


def _toy_weights(tmp_path: Path) -> Path:
    path = tmp_path / "toy.pth"
    torch.save({"model": ToyDetector().state_dict()}, path)
    return path


def test_resume_from_the_training_checkpoint_of_another_model(
        tmp_path: Path, training_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["train", str(TOY_CONFIG), *SHORT_RUN, "model.width=6", "--resume",
                       str(training_checkpoint), "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and str(training_checkpoint) in err.strip().splitlines()[-1]
