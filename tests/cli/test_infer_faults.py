"""``detkit infer`` when things go wrong: an unusable ``--out`` (before any work), a
``predictions.json`` that cannot be written at the end (never lost), an annotated image that
cannot be drawn, NaN from the model on one image, a model with no weights; and its display
threshold."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from apis_toys import ToyDetector

import detkit.cli.infer_pipeline as pipeline
from detkit.cli.infer import main

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "apis" / "toy_detector.py"

# Toy variants, written as config files by the tests (tests/ is on sys.path: `apis_toys`).
VARIANTS = '''
import torch
from apis_toys import ToyDetector
from detkit.config import L


class BuildFails(ToyDetector):
    """Stands for a model too costly to build before checking the output folder."""

    def __init__(self) -> None:
        raise RuntimeError("the model was built")


class LowScores(ToyDetector):
    """The toy's scores times 0.4: 0.36, 0.24, 0.12."""

    def forward(self, images, targets=None):
        predictions, losses = super().forward(images, targets)
        for prediction in predictions:
            prediction["scores"] = prediction["scores"] * 0.4
        return predictions, losses


class NaNOnBright(ToyDetector):
    """NaN scores on images brighter than 0.5 (the others are fine)."""

    def forward(self, images, targets=None):
        predictions, losses = super().forward(images, targets)
        for image, prediction in zip(images, predictions):
            if image.mean() > 0.5:
                prediction["scores"] = torch.full_like(prediction["scores"], float("nan"))
        return predictions, losses


class WithBackboneWeights(ToyDetector):
    """A toy whose `backbone` part takes a `weights` path (as ResNet does), ignored here."""

    def __init__(self, backbone=None) -> None:
        super().__init__()
'''


def write_config(folder: Path, name: str, model: str, extra: str = "") -> Path:
    """A config file ``name.py`` in ``folder`` whose ``model`` is ``model`` (an ``L()`` call)."""
    path = folder / f"{name}.py"
    path.write_text(f"{VARIANTS}\nmodel = {model}\n{extra}")
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with a dark image (``dark.png``) and a bright one (``bright.jpg``)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "dark.png"), np.full((40, 100, 3), 20, np.uint8))
    cv2.imwrite(str(folder / "bright.jpg"), np.full((120, 50, 3), 240, np.uint8))
    return folder


def infer(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--no-progress", "--device", "cpu"])


def records_of(path: Path) -> list[dict]:
    return json.loads(path.read_text())


# -- --out is checked before the model is built ------------------------------------------------

@pytest.mark.parametrize("case", ["a file", "under a file", "deep under a file", "read-only"])
def test_an_unusable_out_fails_before_the_model_is_built(
        tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    # The model here raises when built: the output folder must be refused first (it was not).
    config = write_config(tmp_path, "build_fails", "L(BuildFails)()")
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("a file")
    if case == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        out = locked / "out"
    else:
        out = {"a file": blocker, "under a file": blocker / "sub",
               "deep under a file": blocker / "a" / "b"}[case]
    try:
        status = infer(config, "none", photos, "--out", out)
    finally:
        if case == "read-only":
            locked.chmod(0o700)
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert len(error.splitlines()) == 1, error
    assert error.startswith("detkit infer: error: output folder ") and str(out) in error
    assert "--out" in error
    if case != "read-only":
        assert f"{blocker} is a file" in error
    assert not (tmp_path / "locked" / "out").exists()


def test_a_failing_config_leaves_no_out_folder_behind(tmp_path: Path, photos: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "out"
    config = write_config(tmp_path, "build_fails", "L(BuildFails)()")
    assert infer(config, "none", photos, "--out", out) == 2
    assert "the model was built" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the check made no folders that stay


# -- predictions.json is never lost -------------------------------------------------------------

@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder of :mod:`tempfile`, inside this test's folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def fallback_file(temp_folder: Path, stderr: str) -> Path:
    (saved,) = temp_folder.glob("detkit_predictions_*.json")
    assert f"the predictions are saved in {saved} instead" in stderr
    return saved


def test_predictions_survive_a_failed_final_write(
        tmp_path: Path, photos: Path, temp_folder: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def disk_full(path: Path, records: list[dict]) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pipeline, "write_json", disk_full)
    out = tmp_path / "out"
    assert infer(TOY, "none", photos, "--out", out, "--score-thresh", "0") == 1
    printed = capsys.readouterr()
    saved = fallback_file(temp_folder, printed.err)
    assert f"{out / 'predictions.json'}: cannot write it (No space left on device)" in printed.err
    assert str(saved) in printed.out  # the summary line says where they are
    records = records_of(saved)
    assert sorted({Path(r["file_name"]).name for r in records}) == ["bright.jpg", "dark.png"]
    assert len(records) == 6 and set(records[0]) >= {"file_name", "bbox", "score", "category_id",
                                                      "category_name"}
    assert not (out / "predictions.json").exists()


def test_predictions_survive_the_out_folder_removed_during_the_run(
        tmp_path: Path, photos: Path, temp_folder: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run_images = pipeline.run_images

    def then_remove_out(*args: object, **kwargs: object) -> None:
        run_images(*args, **kwargs)
        shutil.rmtree(out)

    monkeypatch.setattr(pipeline, "run_images", then_remove_out)
    assert infer(TOY, "none", photos, "--out", out) == 1
    saved = fallback_file(temp_folder, capsys.readouterr().err)
    assert len(records_of(saved)) == 6
    assert not list(tmp_path.glob("**/*.json.tmp"))


def test_an_atomic_write_that_fails_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="I/O error"):
        pipeline.write_json(tmp_path / "predictions.json", [{"score": 1.0}])
    assert list(tmp_path.iterdir()) == []


# -- one input's fault costs that input only ---------------------------------------------------

def test_an_annotated_image_that_cannot_be_drawn_is_reported_per_input(
        tmp_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    draw = pipeline.draw_predictions

    def fails_on_bright(image: np.ndarray, result: object) -> np.ndarray:
        if image.mean() > 128:
            raise ValueError("cannot draw this")
        return draw(image, result)

    monkeypatch.setattr(pipeline, "draw_predictions", fails_on_bright)
    out = tmp_path / "out"
    assert infer(TOY, "none", photos, "--out", out, "--batch-size", "2") == 1
    error = capsys.readouterr().err
    assert f"{photos / 'bright.jpg'}: cannot draw {out / 'bright.jpg'}: ValueError: cannot draw this" in error
    assert sorted(p.name for p in out.iterdir()) == ["dark.png", "predictions.json"]
    assert len(records_of(out / "predictions.json")) == 6  # the detections of both images


def test_nan_from_the_model_fails_that_image_only(tmp_path: Path, photos: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Used to fail the whole batch (dark.png too).
    config = write_config(tmp_path, "nan_on_bright", "L(NaNOnBright)()")
    out = tmp_path / "out"
    assert infer(config, "none", photos, "--out", out, "--batch-size", "2") == 1
    error = capsys.readouterr().err
    failures = error[error.index("1 input(s) failed:"):]
    assert f"{photos / 'bright.jpg'}: the model returned a non-finite score" in failures
    assert "dark.png" not in failures
    assert sorted(p.name for p in out.iterdir()) == ["dark.png", "predictions.json"]
    assert {Path(r["file_name"]).name for r in records_of(out / "predictions.json")} == {"dark.png"}


# -- the display threshold ----------------------------------------------------------------------

def test_the_default_score_thresh_is_for_display_and_printed(tmp_path: Path, photos: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "low_scores", "L(LowScores)()")
    assert infer(config, "none", photos / "dark.png", "--out", tmp_path / "shown") == 0
    assert "1 detections (score >= 0.3)" in capsys.readouterr().out
    assert [r["score"] for r in records_of(tmp_path / "shown" / "predictions.json")] == \
        pytest.approx([0.36])
    assert infer(config, "none", photos / "dark.png", "--out", tmp_path / "all", "--score-thresh", "0.005") == 0
    assert "3 detections (score >= 0.005)" in capsys.readouterr().out
    assert len(records_of(tmp_path / "all" / "predictions.json")) == 3


# -- a model with no weights --------------------------------------------------------------------

def untrained_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:") and "untrained" in line]


def test_a_model_with_no_weights_loaded_is_a_one_line_warning(
        tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = photos / "dark.png"
    assert infer(TOY, "none", image, "--out", tmp_path / "a") == 0
    (warning,) = untrained_warnings(capsys.readouterr().err)
    assert str(TOY) in warning and "no checkpoint given" in warning

    checkpoint = tmp_path / "toy.pth"
    torch.save({"model": ToyDetector(with_masks=True, with_landmarks=True).state_dict()}, checkpoint)
    assert infer(TOY, checkpoint, image, "--out", tmp_path / "b") == 0
    assert untrained_warnings(capsys.readouterr().err) == []

    pretrained = write_config(tmp_path, "pretrained", "L(ToyDetector)()", "pretrained = True\n")
    assert infer(pretrained, "none", image, "--out", tmp_path / "c") == 0
    assert untrained_warnings(capsys.readouterr().err) == []

    backbone_only = write_config(tmp_path, "backbone_only",
                                 "L(WithBackboneWeights)(backbone={'weights': 'resnet50.pth'})")
    assert infer(backbone_only, "none", image, "--out", tmp_path / "d") == 0
    (warning,) = untrained_warnings(capsys.readouterr().err)
    assert "only model.backbone.weights is loaded, the rest is random" in warning


def test_nan_on_some_video_frames_fails_those_frames_only(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Used to stop the video at the first such frame, with nothing written for it.
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    bright = [1, 4, 5]
    for index in range(8):
        writer.write(np.full((24, 32, 3), 240 if index in bright else 20, np.uint8))
    writer.release()
    config = write_config(tmp_path, "nan_on_bright", "L(NaNOnBright)()")
    out = tmp_path / "out"
    assert infer(config, "none", clip, "--out", out, "--batch-size", "3") == 1
    error = capsys.readouterr().err
    failures = error[error.index("1 input(s) failed:"):].splitlines()[1:]
    assert len(failures) == 1, failures
    assert failures[0].strip().startswith(f"{clip}: the model failed on 3 of 8 frames (written without "
                                          f"boxes); the first, {clip}#1: the model returned a non-finite score")
    records = records_of(out / "predictions.json")
    assert sorted({r["frame_index"] for r in records}) == [0, 2, 3, 6, 7]
    capture = cv2.VideoCapture(str(next(out.glob("clip.*"))))
    written = 0
    while capture.read()[0]:
        written += 1
    assert written == 8
