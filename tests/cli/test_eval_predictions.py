"""``detkit eval --coco`` on ``detkit infer``'s predictions.json: the same AP as the same detections
given as a COCO results json; ``--out`` writes the metrics and the analysis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detkit.cli import main
from detkit.evaluation import ANALYSIS_FILES

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def write_case(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A ground truth of 6 images, the detections as COCO results, and the same detections as
    ``detkit infer`` writes them (paths for file names, the model's 0-based labels as ids)."""
    rng = np.random.default_rng(0)
    images, annotations, results, records = [], [], [], []
    for i in range(6):
        images.append({"id": 100 + i, "file_name": f"img_{i}.jpg", "width": 64, "height": 64})
        for k in range(3):
            cat = CATEGORIES[int(rng.integers(0, 2))]
            x, y = 20.0 * k + 2, float(rng.uniform(0, 40))
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": cat["id"],
                                "bbox": [x, y, 14.0, 18.0], "area": 14.0 * 18.0, "iscrowd": 0})
            for _ in range(int(rng.integers(0, 3))):  # misses, hits and near misses
                right = CATEGORIES.index(cat)
                label = right if rng.random() < 0.8 else 1 - right
                box = [x + float(rng.normal(0, 1.5)), y + float(rng.normal(0, 1.5)), 14.0, 18.0]
                score = round(float(rng.random()), 4)
                results.append({"image_id": 100 + i, "category_id": CATEGORIES[label]["id"], "bbox": box,
                                "score": score})
                records.append({"file_name": f"photos/run1/img_{i}.jpg", "bbox": box, "score": score,
                                "category_id": label, "category_name": CATEGORIES[label]["name"]})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    coco = tmp_path / "results.json"
    coco.write_text(json.dumps(results))
    infer = tmp_path / "predictions.json"
    infer.write_text(json.dumps(records))
    return gt, coco, infer


def test_infer_predictions_score_as_the_coco_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, coco, infer = write_case(tmp_path)
    assert main(["eval", "--coco", str(gt), str(coco), "--json", str(tmp_path / "coco.json")]) == 0
    capsys.readouterr()
    assert main(["eval", "--coco", str(gt), str(infer), "--json", str(tmp_path / "infer.json")]) == 0
    printed = capsys.readouterr().out
    assert "matched to" in printed and "by base name" in printed
    assert "category ids do not match" in printed and "mapped by category_name" in printed
    expected = json.loads((tmp_path / "coco.json").read_text())
    got = json.loads((tmp_path / "infer.json").read_text())
    assert 0.1 < expected["bbox/AP"] < 0.9  # a case that can tell a wrong mapping
    assert got == expected


def test_video_frames_and_unknown_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, _, infer = write_case(tmp_path)
    records = json.loads(infer.read_text())
    records[2]["frame_index"] = 5
    infer.write_text(json.dumps(records))
    assert main(["eval", "--coco", str(gt), str(infer)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("detkit eval: error:") and "video frames" in err and "\n" not in err
    records = [{**{k: v for k, v in r.items() if k != "frame_index"}, "file_name": f"other_{i}.jpg"}
               for i, r in enumerate(records[:3])]
    infer.write_text(json.dumps(records))
    assert main(["eval", "--coco", str(gt), str(infer)]) == 2
    err = capsys.readouterr().err.strip()
    assert "3 file name(s) match no image of" in err and "'other_0.jpg'" in err and "\n" not in err


def test_out_writes_metrics_and_analysis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, coco, _ = write_case(tmp_path)
    out = tmp_path / "eval"
    assert main(["eval", "--coco", str(gt), str(coco), "--out", str(out), "--analysis-score-thresh", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "fractions in [0, 1]" in printed and "best-F1 thr" in printed
    assert sorted(p.name for p in (out / "analysis").iterdir()) == sorted(ANALYSIS_FILES)
    metrics = json.loads((out / "metrics.json").read_text())
    table = json.loads((out / "analysis" / "per_class.json").read_text())
    rows = {row["name"]: row for row in table["classes"]}
    assert rows["cat"]["ap"]["AP"] == pytest.approx(metrics["bbox/AP-cat"])
    assert rows["all classes"]["ap"]["AP50"] == pytest.approx(metrics["bbox/AP50"])
    matrix = json.loads((out / "analysis" / "confusion_matrix.json").read_text())
    assert matrix["score_thresh"] == 0.5 and matrix["names"] == ["cat", "dog", "background"]
    assert sum(matrix["matrix"][0]) == rows["cat"]["num_gt"] and sum(matrix["matrix"][1]) == rows["dog"]["num_gt"]


def test_without_out_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    gt, coco, _ = write_case(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["eval", "--coco", str(gt), str(coco)]) == 0
    assert "all classes" in capsys.readouterr().out
    assert list(work.iterdir()) == []


def test_an_unwritable_out_fails_before_evaluating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, coco, _ = write_case(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["eval", "--coco", str(gt), str(coco), "--out", str(blocker / "eval")]) == 2
    captured = capsys.readouterr()
    assert "--out" in captured.err and "Average Precision" not in captured.out
