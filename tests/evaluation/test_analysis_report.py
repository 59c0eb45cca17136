"""The analysis of an evaluation: the per-class table (units, the evaluator's APs), the files
written, the VOC conversion, and agreement with pycocotools on the COCO fixture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from analysis_cases import hand_case

from detkit.evaluation import ANALYSIS_FILES, analyze_coco_result, analyze_evaluator, analyze_results
from detkit.evaluation.analysis_report import analyze_voc_result
from detkit.evaluation.coco_eval import evaluate_coco, load_coco, read_results_json
from detkit.evaluation.matching import box_iou_xywh, voc_to_coco
from detkit.evaluation.voc_eval import box_iou_voc, voc_evaluate

COCO_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "coco_eval"


def test_table_states_units_and_marks_undefined_values(tmp_path: Path) -> None:
    gt, results = hand_case()
    gt["categories"].append({"id": 5, "name": "bird"})  # no ground truth, no detection
    analysis = analyze_results(gt, results, ap_columns={"AP": [0.25, 0.5, math.nan]}, title="toy")
    text = analysis.format_table()
    assert text.splitlines()[0].startswith("toy per class @ IoU >= 0.5 (AP, precision, recall and F1 are "
                                           "fractions in [0, 1]")
    assert "%" not in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:] if not line.startswith("-")}
    assert rows["cat"][1:] == ["1", "3", "0.250", "0.900", "1.000", "1.000", "1.000"]
    assert rows["bird"][1:] == ["0", "0", "-", "-", "-", "-", "-"]
    assert rows["all"][2:4] == ["3", "5"] and rows["all"][4] == "0.375"  # the mean of the defined APs
    written = analysis.write(tmp_path)
    assert [p.name for p in written] == list(ANALYSIS_FILES)
    table = json.loads((tmp_path / "per_class.json").read_text())
    assert "[0, 1]" in table["units"] and table["iou_thresh"] == 0.5
    bird = table["classes"][2]
    assert bird == {"name": "bird", "num_gt": 0, "num_det": 0, "ap": {"AP": None}, "best_f1": None}
    # The default confusion threshold is the pooled best F1 (0.3, worked out in test_score_curves).
    assert json.loads((tmp_path / "confusion_matrix.json").read_text())["score_thresh"] == 0.3


def test_coco_fixture_agrees_with_pycocotools() -> None:
    coco_gt = load_coco(COCO_DIR / "instances_val2014_100.json")
    results = read_results_json(COCO_DIR / "instances_val2014_fakebbox100_results.json")
    result = evaluate_coco(coco_gt, results, "bbox")
    analysis = analyze_coco_result(result, results)
    recall = result.coco_eval.eval["recall"][0, :, 0, -1]  # IoU 0.5, area all, 100 detections
    ap = dict(zip(analysis.matches.category_ids, analysis.rows))
    for k, cat in enumerate(result.coco_eval.params.catIds):
        curve = analysis.curves[result.names[cat]]
        if recall[k] < 0:
            assert curve.num_gt == 0
            continue
        assert curve.at(-1.0)[1] == pytest.approx(recall[k], abs=1e-12)
        assert ap[cat].ap["AP"] == pytest.approx(result.per_class[result.names[cat]], nan_ok=True)
    assert analysis.rows[-1].ap["AP"] == pytest.approx(result.stats["AP"])
    assert analysis.rows[-1].num_gt == int(sum(c.num_gt for n, c in analysis.curves.items() if n != "all classes"))
    with pytest.raises(ValueError, match="needs a 'bbox' evaluation"):
        segm = read_results_json(COCO_DIR / "instances_val2014_fakesegm100_results.json")
        analyze_coco_result(evaluate_coco(coco_gt, segm, "segm"), segm)


def test_voc_boxes_keep_their_pixel_convention() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 20, (6, 2))], axis=1)
    for plus_one in (False, True):
        gt, results = voc_to_coco([{"boxes": boxes[:3], "labels": np.zeros(3, np.int64)}],
                                  [{"boxes": boxes[3:], "labels": np.zeros(3, np.int64), "scores": np.ones(3)}],
                                  ["a"], plus_one)
        ours = box_iou_xywh(np.array([r["bbox"] for r in results]), np.array([a["bbox"] for a in gt["annotations"]]))
        assert ours == pytest.approx(box_iou_voc(boxes[3:], boxes[:3], plus_one))


def test_voc_analysis_ignores_difficult_objects() -> None:
    targets = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]), "labels": np.array([0, 0]),
                "difficult": np.array([False, True])}]
    predictions = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [21, 20, 30, 30.0]]),
                    "labels": np.array([0, 0, 0]), "scores": np.array([0.9, 0.8, 0.7])}]
    result = voc_evaluate(targets, predictions, ["a"], plus_one=False)
    analysis = analyze_voc_result(result, targets, predictions)
    row = analysis.rows[0]
    assert (row.num_gt, row.num_det) == (1, 1)  # both detections of the difficult object ignored
    assert row.ap["AP voc12@0.5"] == pytest.approx(1.0) and row.best.precision == 1.0
    assert analysis.confusion.matrix.tolist() == [[1, 0], [0, 0]]


def test_an_unknown_evaluator_is_not_analysed() -> None:
    assert analyze_evaluator(object()) is None
