"""``detkit test`` writes the analysis (per-class table, confusion matrix, P/R/F1 against the score
threshold) into ``analysis/`` of its output folder, on the toy detector of tests/evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from detkit.cli import main
from detkit.evaluation import ANALYSIS_FILES

EVAL_TESTS = Path(__file__).resolve().parents[1] / "evaluation"  # eval_toys.py
if str(EVAL_TESTS) not in sys.path:
    sys.path.insert(0, str(EVAL_TESTS))

from eval_toys import OracleDetector, ToyShapes

CONFIG = f'''
import sys
sys.path.insert(0, {str(EVAL_TESTS)!r})

from eval_toys import OracleDetector, ToyShapes, collate
from torch.utils.data import DataLoader

from detkit.config import L
from detkit.evaluation import VOCEvaluator

model = L(OracleDetector)(score=0.5, masks=False)
dataloader = dict(test=L(DataLoader)(dataset=L(ToyShapes)(n=5), batch_size=2, collate_fn=collate))
'''


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "toy_config.py"
    config.write_text(CONFIG)
    checkpoint = tmp_path / "model_final.pth"
    torch.save({"model": OracleDetector(score=0.25, masks=False).state_dict()}, checkpoint)
    return config, checkpoint


def gt_counts() -> list[int]:
    items = ToyShapes(n=5).items
    return [sum(c == k for objects in items for c, _, _ in objects) for k in range(3)]


def test_analysis_is_written_by_default(files: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    out = tmp_path / "eval"
    assert main(["test", str(config), str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "fractions in [0, 1]" in printed and "analysis/confusion_matrix.png" in printed
    assert sorted(p.name for p in (out / "analysis").iterdir()) == sorted(ANALYSIS_FILES)
    # The oracle finds every object with its class at score 0.25: a diagonal matrix, F1 1 at 0.25.
    counts = gt_counts()
    matrix = json.loads((out / "analysis" / "confusion_matrix.json").read_text())
    assert matrix["names"] == ["red", "green", "blue", "background"]
    assert matrix["matrix"] == [[counts[0], 0, 0, 0], [0, counts[1], 0, 0], [0, 0, counts[2], 0], [0, 0, 0, 0]]
    assert matrix["score_thresh"] == 0.25 and matrix["score_thresh_source"] == "best F1 of all classes"
    table = json.loads((out / "analysis" / "per_class.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    for row in table["classes"]:
        assert row["best_f1"]["f1"] == 1.0 and row["best_f1"]["score_thresh"] == 0.25
    assert [row["num_gt"] for row in table["classes"]] == [*counts, sum(counts)]
    assert table["classes"][0]["ap"]["AP"] == pytest.approx(metrics["bbox/AP-red"]) == pytest.approx(1.0)


def test_voc_evaluator_and_no_analysis(files: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    config.write_text(CONFIG + "evaluator = L(VOCEvaluator)(class_names=['r', 'g', 'b'], iou_threshold=0.7)\n")
    out = tmp_path / "voc"
    assert main(["test", str(config), str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress",
                 "--analysis-score-thresh", "0.3"]) == 0
    table = json.loads((out / "analysis" / "per_class.json").read_text())
    assert table["iou_thresh"] == 0.7 and set(table["classes"][0]["ap"]) == {"AP voc07@0.7", "AP voc12@0.7"}
    matrix = json.loads((out / "analysis" / "confusion_matrix.json").read_text())
    # Above the oracle's 0.25, every object is missed: all counts in the background column.
    assert [row[-1] for row in matrix["matrix"][:3]] == gt_counts() and matrix["score_thresh"] == 0.3
    capsys.readouterr()
    quiet = tmp_path / "quiet"
    assert main(["test", str(config), str(checkpoint), "--out", str(quiet), "--device", "cpu", "--no-progress",
                 "--no-analysis"]) == 0
    assert not (quiet / "analysis").exists() and "best-F1" not in capsys.readouterr().out


def test_bad_analysis_iou_is_a_usage_error(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    with pytest.raises(SystemExit):
        main(["test", str(config), str(checkpoint), "--analysis-iou", "1.5"])
    assert "--analysis-iou must be in (0, 1]" in capsys.readouterr().err


def test_unusable_out_fails_before_the_model_is_built(files: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config, checkpoint = files
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("not a folder")
    built = []
    monkeypatch.setattr(OracleDetector, "__init__", lambda self, *a, **k: built.append(1) or None)
    assert main(["test", str(config), str(checkpoint), "--out", str(blocker / "eval"), "--device", "cpu",
                 "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "a_file.txt is a file" in error[0] and "--out" in error[0]
    assert built == []
