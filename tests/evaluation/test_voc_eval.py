"""VOC mAP: the published Object-Detection-Metrics example and hand-worked cases."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from detkit.evaluation.voc_eval import (
    average_precision,
    box_iou_voc,
    format_voc_table,
    match_detections,
    read_txt_dirs,
    voc_evaluate,
)

PADILLA = Path(__file__).resolve().parents[1] / "fixtures" / "voc_eval" / "padilla"


@pytest.fixture(scope="module")
def padilla():
    return read_txt_dirs(PADILLA / "groundtruths", PADILLA / "detections")


def test_padilla_reader(padilla) -> None:
    targets, predictions, names, images = padilla
    assert names == ["person"] and images == [f"0000{i}" for i in range(1, 8)]
    assert sum(len(t["boxes"]) for t in targets) == 15
    assert sum(len(p["boxes"]) for p in predictions) == 24
    # "person 25 16 38 56" -> xyxy (25, 16, 63, 72)
    np.testing.assert_array_equal(targets[0]["boxes"][0], [25, 16, 63, 72])


def test_padilla_published_ap(padilla) -> None:
    targets, predictions, names, _ = padilla
    result = voc_evaluate(targets, predictions, names, iou_threshold=0.3, plus_one=True)
    assert result.ap["voc12"][0] == pytest.approx(0.245687, abs=1e-6)  # published 24.57 %
    assert result.ap["voc07"][0] == pytest.approx(0.268398, abs=1e-6)  # published 26.84 %
    metrics = result.metrics()
    assert metrics["voc12/mAP@0.3"] == result.ap["voc12"][0]
    assert metrics["voc07/AP@0.3-person"] == result.ap["voc07"][0]
    table = format_voc_table(result)
    assert "0.2457" in table and "0.2684" in table and "+1 pixel" in table and "[0, 1]" in table
    assert "%" not in table


def test_padilla_without_plus_one(padilla) -> None:
    targets, predictions, names, _ = padilla
    result = voc_evaluate(targets, predictions, names, iou_threshold=0.3, plus_one=False, metrics=("voc12",))
    assert result.ap["voc12"][0] == pytest.approx(0.225397, abs=1e-6)
    assert list(result.ap) == ["voc12"]
    assert "no +1" in format_voc_table(result)


def test_iou_plus_one_convention() -> None:
    a = np.array([[0.0, 0, 9, 9]])
    b = np.array([[5.0, 0, 14, 9], [20, 20, 30, 30]])
    # +1: both boxes are 10x10 pixels, they share columns 5..9 (5 x 10 = 50 pixels).
    np.testing.assert_allclose(box_iou_voc(a, b, plus_one=True), [[50 / 150, 0.0]])
    # continuous: 9x9 boxes sharing a 4x9 strip.
    np.testing.assert_allclose(box_iou_voc(a, b, plus_one=False), [[36 / 126, 0.0]])
    # Touching boxes: one shared pixel column with +1, nothing without.
    assert box_iou_voc(a, [[9.0, 0, 18, 9]], True)[0, 0] == pytest.approx(10 / 190)
    assert box_iou_voc(a, [[9.0, 0, 18, 9]], False)[0, 0] == 0.0
    assert box_iou_voc(np.zeros((0, 4)), b).shape == (0, 2)


def test_interpolations_by_hand() -> None:
    # gt A, B; detections: TP(A), duplicate of A (FP), TP(B).
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    # All-point: recall 0 -> 0.5 at envelope 1, 0.5 -> 1 at envelope 2/3.
    assert average_precision(recall, precision, "voc12") == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: thresholds 0..0.5 reach precision 1, 0.6..1.0 reach 2/3.
    assert average_precision(recall, precision, "voc07") == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert average_precision(np.zeros(0), np.zeros(0), "voc12") == 0.0
    assert average_precision(np.zeros(0), np.zeros(0), "voc07") == 0.0
    with pytest.raises(ValueError, match="voc10"):
        average_precision(recall, precision, "voc10")


def _one_image(gt, det, scores, difficult=None, **kw):
    gt = np.array(gt, dtype=float).reshape(-1, 4)
    return match_detections([gt], [np.zeros(len(gt), bool) if difficult is None else np.array(difficult)],
                            [np.array(det, dtype=float).reshape(-1, 4)], [np.array(scores, dtype=float)], **kw)


def test_duplicate_detection_is_false_positive() -> None:
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    # The duplicate overlaps A better than the first detection did; greedy order is by score.
    det = [[0, 0, 10, 11], [0, 0, 10, 10], [20, 20, 30, 30]]
    pr = _one_image(gt, det, [0.9, 0.8, 0.7])
    np.testing.assert_array_equal(pr.tp, [True, False, True])
    np.testing.assert_allclose(pr.precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(pr.recall, [0.5, 0.5, 1])
    assert pr.ap("voc12") == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_difficult_ground_truth_is_ignored() -> None:
    gt = [[0, 0, 10, 10], [50, 50, 60, 60]]
    det = [[0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]]
    pr = _one_image(gt, det, [0.9, 0.95, 0.7], difficult=[False, True])
    # The detection of the difficult gt (the best-scoring one) is neither TP nor FP.
    assert pr.num_gt == 1 and pr.num_ignored == 1
    np.testing.assert_array_equal(pr.tp, [True, False])
    np.testing.assert_allclose(pr.scores, [0.9, 0.7])
    assert pr.ap("voc12") == pytest.approx(1.0)
    # Without the flag, the same detections score differently (2 positives, all matched).
    plain = _one_image(gt, det, [0.9, 0.95, 0.7])
    assert plain.num_gt == 2 and plain.num_ignored == 0
    np.testing.assert_array_equal(plain.tp, [True, True, False])
    # A detection whose best overlap is a difficult gt is ignored even if it also touches a
    # normal gt a little (the devkit looks at the best-overlapping gt only).
    pr = _one_image([[0, 0, 10, 10], [2, 0, 12, 10]], [[2, 0, 12, 10]], [0.5], difficult=[False, True])
    assert pr.num_ignored == 1 and len(pr.tp) == 0 and pr.ap("voc12") == 0.0


def test_iou_threshold_is_inclusive() -> None:
    # IoU exactly 0.5 without +1: 50 / 100.
    pr = _one_image([[0, 0, 10, 10]], [[0, 0, 10, 5]], [0.9], plus_one=False, iou_threshold=0.5)
    np.testing.assert_array_equal(pr.tp, [True])
    pr = _one_image([[0, 0, 10, 10]], [[0, 0, 10, 5]], [0.9], plus_one=False, iou_threshold=0.51)
    np.testing.assert_array_equal(pr.tp, [False])


def test_ties_keep_input_order() -> None:
    # Two images, equal scores: image 0's detection (a miss) comes first, then image 1's hit.
    gt = [np.array([[0.0, 0, 10, 10]]), np.array([[0.0, 0, 10, 10]])]
    diff = [np.zeros(1, bool), np.zeros(1, bool)]
    miss, hit = np.array([[50.0, 50, 60, 60]]), np.array([[0.0, 0, 10, 10]])
    pr = match_detections(gt, diff, [miss, hit], [np.array([0.5]), np.array([0.5])])
    np.testing.assert_array_equal(pr.tp, [False, True])
    assert pr.ap("voc12") == pytest.approx(0.25)
    pr = match_detections(gt, diff, [hit, miss], [np.array([0.5]), np.array([0.5])])
    np.testing.assert_array_equal(pr.tp, [True, False])
    assert pr.ap("voc12") == pytest.approx(0.5)


def test_class_without_ground_truth_is_left_out_of_the_mean() -> None:
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    predictions = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]]),
                    "labels": torch.tensor([0, 1]), "scores": torch.tensor([0.9, 0.8])}]
    result = voc_evaluate(targets, predictions, ["cat", "dog", "bird"])
    for metric in ("voc07", "voc12"):
        assert result.ap[metric][0] == pytest.approx(1.0)
        assert math.isnan(result.ap[metric][1]) and math.isnan(result.ap[metric][2])
        assert result.mean_ap(metric) == pytest.approx(1.0)
    metrics = result.metrics()
    assert metrics["voc07/mAP@0.5"] == pytest.approx(1.0) and math.isnan(metrics["voc07/AP@0.5-dog"])
    assert "n/a (no gt)" in format_voc_table(result)


def test_empty_predictions() -> None:
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    result = voc_evaluate(targets, [empty, empty], 2)
    assert result.class_names == ["0", "1"]
    assert math.isnan(result.ap["voc12"][0]) and result.ap["voc12"][1] == 0.0
    assert result.mean_ap("voc12") == 0.0 and result.mean_ap("voc07") == 0.0
    # No ground truth at all: nothing to average.
    assert math.isnan(voc_evaluate([targets[1]], [empty], 2).mean_ap("voc12"))
    # No images at all.
    assert math.isnan(voc_evaluate([], [], 2).mean_ap("voc07"))


def test_bad_inputs() -> None:
    t = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([3])}
    p = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    with pytest.raises(ValueError, match="label 3 outside"):
        voc_evaluate([t], [p], 2)
    with pytest.raises(ValueError, match="1 targets but 0 predictions"):
        voc_evaluate([t], [], 4)


def _reference_ap(gts, diffs, dets, scores, thr, plus_one):
    """A slow, literal transcription of the devkit's loop (one detection at a time)."""
    flat = [(s, i, b) for i, (bs, ss) in enumerate(zip(dets, scores)) for b, s in zip(bs, ss)]
    flat = sorted(flat, key=lambda x: -x[0])  # Python's sort is stable
    taken = [np.zeros(len(g), bool) for g in gts]
    npos = sum(int((~d).sum()) for d in diffs)
    tp, fp = [], []
    one = 1.0 if plus_one else 0.0
    for _, i, b in flat:
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(gts[i]):
            iw = min(b[2], g[2]) - max(b[0], g[0]) + one
            ih = min(b[3], g[3]) - max(b[1], g[1]) + one
            if iw > 0 and ih > 0:
                ua = (b[2] - b[0] + one) * (b[3] - b[1] + one) + (g[2] - g[0] + one) * (g[3] - g[1] + one) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        if ovmax >= thr:
            if diffs[i][jmax]:
                continue
            if not taken[i][jmax]:
                taken[i][jmax] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(rec, prec, "voc12")


@pytest.mark.parametrize("seed", range(5))
def test_matches_literal_reference_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def boxes(n):
        xy = rng.integers(0, 40, (n, 2)).astype(float)
        return np.concatenate([xy, xy + rng.integers(1, 25, (n, 2))], axis=1)

    gts = [boxes(rng.integers(0, 5)) for _ in range(6)]
    diffs = [rng.random(len(g)) < 0.2 for g in gts]
    dets = [np.concatenate([g + rng.integers(-3, 4, g.shape), boxes(rng.integers(0, 4))]) for g in gts]
    scores = [np.round(rng.random(len(d)), 1) for d in dets]  # coarse scores: many ties
    if sum(int((~d).sum()) for d in diffs) == 0:  # make sure there is a positive
        gts[0], diffs[0] = boxes(2), np.zeros(2, bool)
    for plus_one in (True, False):
        pr = match_detections(gts, diffs, dets, scores, 0.5, plus_one)
        assert pr.ap("voc12") == pytest.approx(_reference_ap(gts, diffs, dets, scores, 0.5, plus_one), abs=1e-12)


def test_continuous_boxes_without_plus_one_equal_inclusive_indices_with_it() -> None:
    """detkit's VOC reader maps (xmin, ymin, xmax, ymax) to (xmin - 1, ymin - 1, xmax, ymax); on
    those boxes plain IoU equals the devkit's +1 IoU on the indices, so the APs are identical."""
    rng = np.random.default_rng(7)
    targets, predictions, shifted_t, shifted_p = [], [], [], []
    for _ in range(8):
        gt = rng.integers(1, 40, (4, 2))
        gt = np.concatenate([gt, gt + rng.integers(0, 20, (4, 2))], axis=1).astype(float)
        det = np.concatenate([gt + rng.integers(-3, 4, gt.shape), gt[:2] + 1]).astype(float)
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2])
        labels, det_labels = rng.integers(0, 2, 4), rng.integers(0, 2, 6)
        scores = rng.random(6)
        targets.append({"boxes": gt, "labels": labels})
        predictions.append({"boxes": det, "labels": det_labels, "scores": scores})
        to_continuous = np.array([-1.0, -1.0, 0.0, 0.0])
        shifted_t.append({"boxes": gt + to_continuous, "labels": labels})
        shifted_p.append({"boxes": det + to_continuous, "labels": det_labels, "scores": scores})
    inclusive = voc_evaluate(targets, predictions, 2, plus_one=True)
    continuous = voc_evaluate(shifted_t, shifted_p, 2, plus_one=False)
    for metric in ("voc07", "voc12"):
        np.testing.assert_allclose(continuous.ap[metric], inclusive.ap[metric], rtol=0, atol=1e-12)
    assert 0 < inclusive.mean_ap("voc12") < 1


def test_txt_layout_evidence_from_the_ground_truth(tmp_path: Path) -> None:
    """Detections named xyxy that overlap the gt far better as xywh: a warning (named), never silent."""
    (tmp_path / "gt").mkdir(), (tmp_path / "det").mkdir()
    for i in range(12):
        x, y = 20 + i, 25 + i
        (tmp_path / "gt" / f"{i}.txt").write_text(f"cat {x} {y} 60 70\n")
        (tmp_path / "det" / f"{i}.txt").write_text(f"cat 0.9 {x + 1} {y} 60 70\n")  # xywh, as the gt
    with pytest.warns(UserWarning) as caught:
        read_txt_dirs(tmp_path / "gt", tmp_path / "det", layout="xywh", det_layout="xyxy")
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"det: read as xyxy .* mean best IoU .* is their layout xywh\?", m) for m in messages)
    assert any("gt: all 12 ground-truth boxes have width > left" in m for m in messages)  # named: a warning
    with pytest.raises(ValueError, match=r"gt: all 12 ground-truth boxes have width > left .* Name the layout"):
        read_txt_dirs(tmp_path / "gt", tmp_path / "det")
    with pytest.raises(ValueError, match="unknown box layout 'ltrb'"):
        read_txt_dirs(tmp_path / "gt", tmp_path / "det", layout="ltrb")
