"""``detkit strip``: a training checkpoint stripped to the model gives ``detkit.load`` the same
model (the same predictions) in a much smaller file, and refuses a bad file in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
sys.path.insert(0, str(ENGINE_TESTS))  # the toy detector and its training config live there

import detkit  # noqa: E402
from detkit.cli import main as cli_main  # noqa: E402
from detkit.engine import run_training  # noqa: E402
from engine_helpers import REPO_ROOT, TOY_CONFIG, load_weights_only  # noqa: E402
from toy_detector import ToyDataset  # noqa: E402

# EMA on (the toy config's), so model (EMA) and model_raw differ; width 32 so the weights, not
# the file's bookkeeping, make up its size.
RUN = ["train.max_iter=6", "train.checkpoint_period=0", "train.eval_period=0", "model.width=32"]


@pytest.fixture(scope="module")
def final(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("strip_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(TOY_CONFIG, output_dir=out, overrides=RUN)
    finally:
        torch.set_num_threads(threads)
    return out / "model_final.pth"


def predictions(path: Path) -> list[dict[str, torch.Tensor]]:
    model = detkit.load(path, allowed_modules=["toy_detector"])
    images = [ToyDataset(size=4)[i][0] for i in range(4)]
    with torch.no_grad():
        return model(images)[0]


def strip(final: Path, out: Path, *options: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli_main(["strip", str(final), str(out), *options]) == 0
    return capsys.readouterr().out


def test_the_stripped_file_loads_to_the_same_predictions_and_is_much_smaller(
        final: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "weights.pth"
    printed = strip(final, out, capsys=capsys)
    original, stripped = load_weights_only(final), load_weights_only(out)
    assert set(stripped) == {"model", "model_config", "class_names", "config", "meta"}
    assert stripped["meta"]["model_weights"] == "ema" and stripped["meta"]["iteration"] == 6
    for key, value in original["model"].items():
        assert torch.equal(stripped["model"][key], value), key
    for ours, theirs in zip(predictions(out), predictions(final)):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    before, after = final.stat().st_size, out.stat().st_size
    assert after < 0.4 * before  # optimizer momentum, model_raw and the EMA state are gone
    assert printed.startswith(f"wrote {out}: 8 tensors (ema weights); ")
    assert f"({after / before:.0%}); dropped: " in printed and "optimizer" in printed and "rng" in printed


def test_raw_keeps_the_trained_weights_and_half_stores_float16(
        final: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = load_weights_only(final)
    strip(final, tmp_path / "raw.pth", "--raw", capsys=capsys)
    raw = load_weights_only(tmp_path / "raw.pth")
    assert raw["meta"]["model_weights"] == "trained"
    assert all(torch.equal(raw["model"][key], value) for key, value in original["model_raw"].items())
    assert not all(torch.equal(raw["model"][key], value) for key, value in original["model"].items())

    strip(final, tmp_path / "half.pth", "--half", capsys=capsys)
    half = load_weights_only(tmp_path / "half.pth")
    assert {value.dtype for value in half["model"].values()} == {torch.float16}
    assert (tmp_path / "half.pth").stat().st_size < (tmp_path / "raw.pth").stat().st_size
    for ours, theirs in zip(predictions(tmp_path / "half.pth"), predictions(final)):
        torch.testing.assert_close(ours["scores"], theirs["scores"], atol=2e-3, rtol=0)


def test_stripping_in_place_and_a_stripped_file_is_no_resume_point(
        final: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.pth"
    copy.write_bytes(final.read_bytes())
    strip(copy, copy, capsys=capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["copy.pth"]  # written atomically, no temp file
    assert cli_main(["train", str(TOY_CONFIG), *RUN, "--resume", str(copy), "--output-dir",
                     str(tmp_path / "run")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"detkit train: error: {copy} is not a training checkpoint: no optimizer")


def test_a_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint\n")
    assert cli_main(["strip", str(bad), str(tmp_path / "out.pth")]) == 2
    assert capsys.readouterr().err == (f"detkit strip: error: cannot read checkpoint {bad}: "
                                       "a text file, not a torch checkpoint\n")
    assert not (tmp_path / "out.pth").exists()


def test_the_tool_wraps_the_command() -> None:
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "strip_checkpoint.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--raw" in result.stdout and "--half" in result.stdout
