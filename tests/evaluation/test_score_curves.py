"""Precision / recall / F1 against the score threshold: hand-worked values, and the same quantities
as pycocotools (its per-image matches) and detkit's VOC evaluator define them on random data."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from analysis_cases import hand_case
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detkit.evaluation.matching import match_results, voc_to_coco
from detkit.evaluation.score_curves import ALL_CLASSES, ScoreCurve, curves_to_json, save_score_curves, score_curves
from detkit.evaluation.voc_eval import voc_evaluate


def test_hand_case_values() -> None:
    curves = score_curves(match_results(*hand_case()))
    assert list(curves) == ["cat", "dog", ALL_CLASSES]
    cat, dog, pooled = curves["cat"], curves["dog"], curves[ALL_CLASSES]
    # cat: 0.9 TP, 0.8 FP, 0.7 FP (0.6 ignored); one positive.
    assert cat.scores.tolist() == [0.9, 0.8, 0.7] and cat.tp.tolist() == [True, False, False]
    p, r, f1 = cat.at(np.array([0.9, 0.7, 0.0, 0.95]))
    assert p[:3].tolist() == [1.0, 1 / 3, 1 / 3] and math.isnan(p[3])
    assert r.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert f1[:3] == pytest.approx([1.0, 0.5, 0.5]) and f1[3] == 0.0
    best = cat.best_f1()
    assert (best.score_thresh, best.precision, best.recall, best.f1, best.tp, best.num_det) == (0.9, 1.0, 1.0, 1.0, 1, 1)
    # dog: 0.95 FP, 0.3 TP; two positives: best F1 = 2 * 1 / (2 + 2) at 0.3.
    best = dog.best_f1()
    assert (best.score_thresh, best.precision, best.recall, best.f1) == (0.3, 0.5, 0.5, 0.5)
    # pooled: 0.95 F, 0.9 T, 0.8 F, 0.7 F, 0.3 T with 3 positives: F1 0, 2/5, 2/6, 2/7, 4/8.
    assert pooled.num_gt == 3
    _, _, f1 = pooled.at(np.array([0.95, 0.9, 0.8, 0.7, 0.3]))
    assert f1 == pytest.approx([0, 2 / 5, 2 / 6, 2 / 7, 4 / 8])
    assert pooled.best_f1().score_thresh == 0.3


def test_best_f1_ties_keep_the_highest_threshold_and_equal_scores_move_together() -> None:
    # F1 at 0.9: 2/3; at 0.8: 1/2; at 0.7: 2/5; at 0.6: 4/6 = 2/3 (a tie with 0.9).
    curve = ScoreCurve("c", 2, np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, False, True]))
    assert curve.best_f1().score_thresh == 0.9 and curve.best_f1().num_det == 1
    # Two detections of score 0.5 (one TP, one FP) are kept or dropped together.
    curve = ScoreCurve("c", 1, np.array([0.5, 0.5]), np.array([False, True]))
    tp, kept = curve.counts(np.array([0.5, 0.51]))
    assert tp.tolist() == [1, 0] and kept.tolist() == [2, 0]
    assert curve.best_f1().f1 == pytest.approx(2 / 3)


def test_undefined_values() -> None:
    no_gt = ScoreCurve("c", 0, np.array([0.4]), np.array([False]))
    p, r, f1 = no_gt.at(0.1)
    assert p == 0.0 and math.isnan(r) and math.isnan(f1) and no_gt.best_f1() is None
    no_det = ScoreCurve("c", 3, np.zeros(0), np.zeros(0, bool))
    p, r, f1 = no_det.at(0.1)
    assert math.isnan(p) and r == 0.0 and f1 == 0.0 and no_det.best_f1() is None


def test_per_image_cap_of_detections() -> None:
    gt, results = hand_case()
    # With one detection per image and class, image 10 keeps only cat 0.9 and dog 0.3.
    curves = score_curves(match_results(gt, results, max_dets=1))
    assert curves["cat"].scores.tolist() == [0.9] and curves["dog"].scores.tolist() == [0.95, 0.3]


def random_dataset(seed: int, crowd: bool) -> tuple[dict, list[dict]]:
    """Ground truths on a grid of 25 px cells (disjoint, with gaps), detections jittered from them
    (some with the wrong class) plus random false positives, random scores."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, 16):
        images.append({"id": image_id, "width": 100, "height": 100})
        cells = rng.choice(16, size=int(rng.integers(0, 7)), replace=False)
        for cell in cells:
            w, h = rng.uniform(8, 18, 2)
            x, y = (cell % 4) * 25 + rng.uniform(0, 24 - w), (cell // 4) * 25 + rng.uniform(0, 24 - h)
            cat = int(rng.integers(1, 4))
            is_crowd = int(crowd and rng.random() < 0.15)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": is_crowd})
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0, 2.5, 4)
                label = cat if rng.random() < 0.8 else int(rng.integers(1, 4))
                results.append({"image_id": image_id, "category_id": label,
                                "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)],
                                "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 90, 2)
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)),
                            "bbox": [x, y, *rng.uniform(3, 12, 2)], "score": float(rng.random())})
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_counts(gt: dict, results: list[dict], thresh: float) -> dict[int, tuple[int, int, float]]:
    """category id -> (TP, counted detections, recall) of COCOeval at IoU 0.5, area all, keeping score >= thresh."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        kept = [r for r in results if r["score"] >= thresh]
        ev = COCOeval(coco, coco.loadRes(kept) if kept else COCO(), "bbox")
        ev.evaluate()
        ev.accumulate()
    counts = {}
    for k, cat in enumerate(ev.params.catIds):
        tp = det = 0
        for e in ev.evalImgs:
            if e is None or e["category_id"] != cat or e["aRng"] != ev.params.areaRng[0]:
                continue
            counted = ~np.asarray(e["dtIgnore"][0], bool)
            tp += int((np.asarray(e["dtMatches"][0])[counted] > 0).sum())
            det += int(counted.sum())
        counts[cat] = (tp, det, float(ev.eval["recall"][0, k, 0, -1]))
    return counts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.75])
def test_precision_and_recall_equal_pycocotools(seed: int, thresh: float) -> None:
    gt, results = random_dataset(seed, crowd=True)
    assert any(a["iscrowd"] for a in gt["annotations"])
    curves = score_curves(match_results(gt, results))
    for cat, (tp, det, recall) in pycocotools_counts(gt, results, thresh).items():
        curve = curves[f"c{cat}"]
        assert curve.counts(thresh) == (tp, det)
        p, r, _ = curve.at(thresh)
        assert r == pytest.approx(recall, abs=1e-12) if recall >= 0 else math.isnan(r)
        assert p == pytest.approx(tp / det) if det else math.isnan(p)


def xyxy(b: list[float]) -> list[float]:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


@pytest.mark.parametrize("seed", [3, 4])
def test_precision_and_recall_equal_detkit_voc(seed: int) -> None:
    gt, results = random_dataset(seed, crowd=False)
    rng = np.random.default_rng(seed)
    difficult_ids = {a["id"] for a in gt["annotations"] if rng.random() < 0.2}
    targets, predictions = [], []
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        dets = [r for r in results if r["image_id"] == image["id"]]
        targets.append({"boxes": np.array([xyxy(a["bbox"]) for a in anns]).reshape(-1, 4),
                        "labels": np.array([a["category_id"] - 1 for a in anns], np.int64),
                        "difficult": np.array([a["id"] in difficult_ids for a in anns], bool)})
        predictions.append({"boxes": np.array([xyxy(r["bbox"]) for r in dets]).reshape(-1, 4),
                            "labels": np.array([r["category_id"] - 1 for r in dets], np.int64),
                            "scores": np.array([r["score"] for r in dets])})
    names = ["c1", "c2", "c3"]
    voc = voc_evaluate(targets, predictions, names, iou_threshold=0.5, plus_one=False)
    common_gt, common_results = voc_to_coco(targets, predictions, names)
    curves = score_curves(match_results(common_gt, common_results, max_dets=None))
    for name, pr in zip(names, voc.curves):
        curve = curves[name]
        assert curve.num_gt == pr.num_gt
        for thresh in (0.0, 0.4, 0.8):
            n = int((pr.scores >= thresh).sum())
            p, r, _ = curve.at(thresh)
            if n:
                assert p == pytest.approx(pr.precision[n - 1]) and r == pytest.approx(pr.recall[n - 1])
            else:
                assert math.isnan(p) and r == 0


def test_json_and_pngs(tmp_path: Path) -> None:
    curves = score_curves(match_results(*hand_case()))
    data = json.loads(json.dumps(curves_to_json(curves)))
    assert len(data["thresholds"]) == 101 and data["thresholds"][0] == 0 and data["thresholds"][-1] == 1
    cat = data["classes"]["cat"]
    assert cat["best_f1"]["score_thresh"] == 0.9 and cat["recall"][0] == 1.0
    assert cat["precision"][-1] is None  # nothing scores >= 1.0: undefined
    assert "[0, 1]" in data["units"]
    paths = save_score_curves(curves, tmp_path, "toy")
    assert [p.name for p in paths] == ["precision_vs_score.png", "recall_vs_score.png", "f1_vs_score.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
