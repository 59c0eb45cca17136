"""tools/infer.py and tools/benchmark_video.py on the toy detector (tests/apis_toys.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch
from apis_testing import detkit_threads, video_properties, write_clip
from apis_toys import TOY_DETECTIONS, ToyDetector

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "fixtures" / "configs" / "apis" / "toy_detector.py"


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"detkit_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def infer() -> ModuleType:
    return load_tool("infer")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder: two images, a sub-folder (not searched), a text file; a clip beside it."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    cv2.imwrite(str(folder / "wide.png"), np.full((40, 100, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "tall.jpg"), np.full((120, 50, 3), 160, np.uint8))
    cv2.imwrite(str(folder / "nested" / "deep.png"), np.zeros((10, 10, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    write_clip(tmp_path / "clip.avi", frames=7, fps=8.0, size=(64, 48))
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    return tmp_path


def run(infer: ModuleType, *args: str | Path) -> int:
    return infer.main([str(a) for a in args] + ["--no-progress"])


def test_images_folders_and_videos_with_failures_listed(infer: ModuleType, inputs: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = inputs / "out"
    status = run(infer, CONFIG, "none", inputs / "photos", inputs / "clip.avi", inputs / "missing.jpg",
                 inputs / "broken.jpg", inputs / "photos" / "notes.txt", "--out", out, "--batch-size", "3")
    assert status == 1
    error = capsys.readouterr().err
    failures = error[error.index("3 input(s) failed:"):]
    assert "missing.jpg: no such file" in failures
    assert "broken.jpg: cannot decode" in failures
    assert "notes.txt: unsupported extension '.txt'" in failures
    written = sorted(p.name for p in out.iterdir())
    assert written == ["clip.mp4", "predictions.json", "tall.jpg", "wide.png"]  # not nested/deep.png
    assert cv2.imread(str(out / "wide.png")).shape == (40, 100, 3)
    assert cv2.imread(str(out / "tall.jpg")).shape == (120, 50, 3)
    assert video_properties(out / "clip.mp4") == (7, 8.0, (64, 48))
    assert detkit_threads() == []

    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 3 * 2 + 3 * 7
    wide = [r for r in records if r["file_name"].endswith("wide.png")]
    assert [r["category_name"] for r in wide] == ["cat", "dog", "person"]
    (x1, y1, x2, y2), label, score = TOY_DETECTIONS[0]
    assert wide[0]["bbox"] == pytest.approx([x1 * 100, y1 * 40, (x2 - x1) * 100, (y2 - y1) * 40])
    assert wide[0]["score"] == pytest.approx(score) and wide[0]["category_id"] == label
    assert "frame_index" not in wide[0]
    assert set(wide[0]) == {"file_name", "bbox", "score", "category_id", "category_name",
                            "segmentation", "landmarks"}
    frames = [r for r in records if r["file_name"] == str(inputs / "clip.avi")]
    assert sorted({r["frame_index"] for r in frames}) == list(range(7))


def test_filters_globs_overrides_and_checkpoints(infer: ModuleType, inputs: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "toy.pth"
    torch.save({"model": ToyDetector().state_dict()}, checkpoint)
    out = tmp_path / "filtered"
    status = run(infer, CONFIG, checkpoint, str(inputs / "photos" / "*.png"), "--out", out,
                 "--classes", "dog,person", "--score-threshold", "0.5", "--max-detections", "5",
                 "model.with_masks=False")  # an override after the options
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "predictions.json").read_text())
    assert [(r["category_name"], r["category_id"]) for r in records] == [("dog", 1)]
    assert "segmentation" not in records[0]  # the override removed the masks
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json", "wide.png"]


def test_same_names_from_two_folders_do_not_overwrite(infer: ModuleType, tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "dog.jpg"), np.zeros((20, 20, 3), np.uint8))
    assert run(infer, CONFIG, "none", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "a") == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "dog.jpg", "dog_1.jpg", "dog_2.jpg", "predictions.json"]  # the input itself kept


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_a_model_error_fails_only_its_image_and_the_rest_goes_on(
        infer: ModuleType, inputs: Path, capsys: pytest.CaptureFixture[str], batch_size: str) -> None:
    # Used to fail the whole batch: a batch that fails is now re-run one image at a time.
    out = inputs / "out"
    status = run(infer, CONFIG, "none", inputs / "photos", "--out", out, "--batch-size", batch_size,
                 "model.max_pixels=5000")  # tall.jpg (6000 pixels) is too big
    assert status == 1
    error = capsys.readouterr().err
    assert "tall.jpg: the model failed on this image: toy out of memory" in error
    assert "wide.png" not in error
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json", "wide.png"]
    records = json.loads((out / "predictions.json").read_text())
    assert {Path(r["file_name"]).name for r in records} == {"wide.png"}


def test_a_checkpoint_that_does_not_fit_fails_fast_naming_keys(
        infer: ModuleType, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "wide.pth"
    torch.save({"model": ToyDetector(width=16).state_dict()}, checkpoint)
    out = tmp_path / "never"
    assert run(infer, CONFIG, checkpoint, inputs / "photos", "--out", out) == 2
    error = capsys.readouterr().err
    assert "does not fit" in error and "stem.weight (checkpoint [16, 3, 3, 3], model [4, 3, 3, 3])" in error
    assert not out.exists()
    assert run(infer, CONFIG, "none", inputs / "photos", "model.depht=2", "--out", out) == 2
    assert "depht" in capsys.readouterr().err


def test_the_command_line(inputs: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    process = subprocess.run(
        [sys.executable, str(REPO / "tools" / "infer.py"), str(CONFIG), "none",
         str(inputs / "photos" / "wide.png"), "--out", str(inputs / "cli"), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=120)
    assert process.returncode == 0, process.stderr
    assert "1 images, 0 videos" in process.stdout and "img/s" in process.stderr  # tqdm rate
    assert (inputs / "cli" / "wide.png").is_file()


@pytest.mark.filterwarnings("ignore::detkit.apis.predictor.UntrainedModelWarning")  # the toy, untrained
def test_benchmark_prints_both_fps_and_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = load_tool("benchmark_video")
    status = benchmark.main([str(CONFIG), "none", "--frames", "8", "--size", "64x48",
                             "--batch-size", "4", "--repeat", "1", "--device", "cpu"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "model-only fps:" in printed and "end-to-end fps:" in printed and "ratio:" in printed
    assert detkit_threads() == []
