"""``detkit test --tta`` and ``detkit infer --tta`` end to end on the oracle toy detector (it finds
the lit rectangle of each channel, so its flipped views map back exactly), and the options' errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detkit.cli import main

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "evaluation", TESTS / "apis", TESTS):  # eval_toys, apis_testing, apis_toys
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from apis_testing import write_clip  # noqa: E402
from eval_toys import OracleDetector  # noqa: E402

CONFIG = f'''
import sys
sys.path.insert(0, {str(TESTS / "evaluation")!r})

from eval_toys import OracleDetector, ToyShapes, collate
from torch.utils.data import DataLoader

from detkit.config import L

model = L(OracleDetector)(score=0.5, masks=False)
dataloader = dict(test=L(DataLoader)(dataset=L(ToyShapes)(n=4), batch_size=2, collate_fn=collate))
'''


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "oracle_config.py"
    config.write_text(CONFIG)
    checkpoint = tmp_path / "oracle.pth"
    torch.save({"model": OracleDetector(score=0.5, masks=False).state_dict()}, checkpoint)
    return config, checkpoint


def _test(config: Path, checkpoint: Path, out: Path, *options: str) -> int:
    return main(["test", str(config), str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress",
                 "--no-analysis", *options])


def test_detkit_test_tta_evaluates_the_merged_views(files: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    # the oracle's boxes are shifted 0.5 px right: its flipped view's come back shifted 0.5 px left,
    # and weighted box fusion averages the two into the true box
    shifted = ["model.shift=0.5"]
    assert _test(config, checkpoint, tmp_path / "plain", *shifted) == 0
    plain_printed = capsys.readouterr().out
    assert "test-time augmentation" not in plain_printed
    assert _test(config, checkpoint, tmp_path / "wbf", *shifted, "--tta-merge", "wbf") == 0
    printed = capsys.readouterr().out
    assert "test-time augmentation: 2 views (flips none, horizontal; network-input scales 1), merged by wbf" in printed
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    fused = json.loads((tmp_path / "wbf" / "metrics.json").read_text())
    assert fused["bbox/AP"] == pytest.approx(1.0) and plain["bbox/AP"] < 0.95
    detections = json.loads((tmp_path / "wbf" / "coco_results.json").read_text())
    assert detections and all(d["score"] == pytest.approx(0.5) for d in detections)
    # plain --tta: NMS keeps one of the two (equal scores: the first view's, unflipped)
    assert _test(config, checkpoint, tmp_path / "nms", "--tta") == 0
    assert json.loads((tmp_path / "nms" / "metrics.json").read_text())["bbox/AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("options, message", [
    (["--tta-flips", "vertical"], "tta (--tta): TestTimeAugmentation: flips must be distinct values of"),
    (["--tta-scales", "0,1"], "tta (--tta): TestTimeAugmentation: scales must be distinct positive numbers"),
])
def test_detkit_test_bad_tta_options_are_one_line_errors(files: tuple[Path, Path], tmp_path: Path, options: list[str],
                                                         message: str, capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    assert _test(config, checkpoint, tmp_path / "out", *options) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # (log lines of other tests' handlers before it)
    assert error.startswith("detkit test: error: ") and message in error


def test_detkit_test_tta_scales_must_be_numbers(files: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    with pytest.raises(SystemExit) as exit_info:
        _test(config, checkpoint, tmp_path / "out", "--tta-scales", "1,big")
    assert exit_info.value.code == 2
    assert "--tta-scales must be comma-separated numbers, got '1,big'" in capsys.readouterr().err


def _lit_image(path: Path) -> None:
    image = np.zeros((48, 64, 3), np.uint8)  # BGR: red (channel 0 after the RGB conversion) at 10..30
    image[5:25, 10:30, 2] = 255
    image[30:44, 40:60, 0] = 255  # blue: channel 2
    cv2.imwrite(str(path), image)


def test_detkit_infer_tta_on_images_and_a_video(files: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    _lit_image(tmp_path / "lit.png")
    write_clip(tmp_path / "clip.mp4", frames=3, fps=10.0, size=(64, 48))
    out = tmp_path / "out"
    status = main(["infer", str(config), str(checkpoint), str(tmp_path / "lit.png"), str(tmp_path / "clip.mp4"),
                   "--out", str(out), "--tta", "--tta-scales", "1,2", "--device", "cpu", "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "test-time augmentation: 4 views (flips none, horizontal; network-input scales 1, 2)" in printed
    assert f"video {out / 'clip.mp4'}: " in printed and ("H.264" in printed or "mp4v" in printed)
    records = [r for r in json.loads((out / "predictions.json").read_text()) if r["file_name"].endswith("lit.png")]
    boxes = sorted((r["category_id"], [round(v, 3) for v in r["bbox"]]) for r in records)
    assert boxes == [(0, [10.0, 5.0, 20.0, 20.0]), (2, [40.0, 30.0, 20.0, 14.0])]  # the views agree exactly


def test_detkit_infer_tta_refuses_to_flip_landmarks_without_pairs(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    toy_config = TESTS / "fixtures" / "configs" / "apis" / "toy_detector.py"  # predicts landmarks
    _lit_image(tmp_path / "lit.png")
    args = ["infer", str(toy_config), "none", str(tmp_path / "lit.png"), "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a"), "--tta"]) == 1
    assert "predicts 'landmarks' but declares no keypoint_flip_pairs" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--tta-flips", "none", "--tta-scales", "1,0.5"]) == 0
