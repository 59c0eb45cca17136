"""The confusion matrix with a background row and column, on the hand-made case of analysis_cases.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from analysis_cases import CAT, hand_case

from detkit.evaluation.confusion import BACKGROUND, confusion_matrix
from detkit.evaluation.matching import match_results


def test_matching_of_the_hand_case() -> None:
    matches = match_results(*hand_case())
    assert matches.class_names == ["cat", "dog"]
    assert matches.num_gt.tolist() == [1, 2]  # the crowd is not a positive
    by_score = dict(zip(matches.det_score.tolist(), zip(matches.det_tp.tolist(), matches.det_ignored.tolist())))
    assert by_score == {0.9: (True, False), 0.8: (False, False), 0.7: (False, False), 0.6: (False, True),
                        0.3: (True, False), 0.95: (False, False)}
    assert matches.num_det().tolist() == [3, 2]  # the ignored detection is not counted


def test_confusion_matrix_at_half_score() -> None:
    cm = confusion_matrix(match_results(*hand_case()), 0.5)
    assert cm.names == ["cat", "dog", BACKGROUND]
    # rows: ground truth cat, dog, background; columns: predicted cat, dog, background.
    assert cm.matrix.tolist() == [
        [1, 0, 0],  # A found
        [1, 0, 1],  # B taken for a cat (d3), D missed
        [1, 1, 0],  # d2 (duplicate cat), the dog on image 12
    ]


def test_confusion_matrix_when_the_right_detection_is_kept() -> None:
    cm = confusion_matrix(match_results(*hand_case()), 0.25)
    assert cm.matrix.tolist() == [
        [1, 0, 0],
        [0, 1, 1],  # d5 finds B; D missed
        [2, 1, 0],  # d2 and d3 are now false positives on background
    ]
    # Rows sum to the positives, columns to the counted detections kept.
    assert cm.matrix[:2].sum(axis=1).tolist() == [1, 2]
    assert cm.matrix[:, :2].sum(axis=0).tolist() == [3, 2]


def test_above_every_score_all_ground_truth_is_missed() -> None:
    cm = confusion_matrix(match_results(*hand_case()), 1.5)
    assert cm.matrix.tolist() == [[0, 0, 1], [0, 0, 2], [0, 0, 0]]


def test_a_lower_iou_threshold_turns_the_duplicate_into_nothing_new() -> None:
    # At IoU 0.9 the 1 px shift (IoU 0.82) does not match, d1 still does.
    gt, results = hand_case()
    cm = confusion_matrix(match_results(gt, results, iou_thresh=0.9), 0.5)
    assert cm.matrix[0].tolist() == [1, 0, 0] and cm.matrix[2, 0] == 1


def test_saved_json_and_png(tmp_path: Path) -> None:
    cm = confusion_matrix(match_results(*hand_case()), 0.5, "given")
    png, path = cm.save(tmp_path)
    data = json.loads(path.read_text())
    assert data["names"] == ["cat", "dog", "background"] and data["matrix"] == cm.matrix.tolist()
    assert data["score_thresh"] == 0.5 and data["iou_thresh"] == 0.5 and "rows: ground truth" in data["layout"]
    img = cv2.imread(str(png))
    assert img is not None and img.ndim == 3
    # The diagonal cat cell holds all of its row: it is drawn in the darkest shade.
    dark = (np.abs(img.astype(int) - np.array([180, 119, 31])).sum(axis=2) < 30).sum()
    assert dark > 100


def test_unknown_ids_are_refused() -> None:
    gt, results = hand_case()
    with pytest.raises(ValueError, match="unknown image ids \\[99\\]"):
        match_results(gt, [*results, {"image_id": 99, "category_id": CAT, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="category ids \\[7\\]"):
        match_results(gt, results, category_ids=[7])
