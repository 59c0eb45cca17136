"""Face AP: VOC matching at IoU 0.5, ignored faces, size subsets and per-face subset flags."""

from __future__ import annotations

import math

import pytest
import torch

from detkit.evaluation.face_ap import face_ap, face_subset_mask


def _targets():
    return [
        {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [100.0, 100.0, 200.0, 200.0], [300.0, 0.0, 330.0, 30.0]]),
         "ignore": torch.tensor([False, False, True]), "hard": torch.tensor([True, False, False])},
        {"boxes": torch.zeros(0, 4), "ignore": torch.zeros(0, dtype=torch.bool), "hard": torch.zeros(0, dtype=torch.bool)},
    ]


def test_perfect_detections_score_one_and_ignored_faces_do_not_count():
    predictions = [
        {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [100.0, 100.0, 200.0, 200.0], [300.0, 0.0, 330.0, 30.0]]),
         "scores": torch.tensor([0.9, 0.8, 0.95])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)},
    ]
    result = face_ap(_targets(), predictions, subsets=("all", "small", "medium", "hard"))
    assert result["face_AP@0.5-all"] == pytest.approx(1.0)
    assert result["face_AP@0.5-small"] == pytest.approx(1.0)  # the 20 px face
    assert result["face_AP@0.5-medium"] == pytest.approx(1.0)  # the 100 px face
    assert result["face_AP@0.5-hard"] == pytest.approx(1.0)  # flagged per face


def test_false_positive_ranked_first_halves_precision():
    predictions = [
        {"boxes": torch.tensor([[50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 20.0, 20.0], [100.0, 100.0, 200.0, 200.0]]),
         "scores": torch.tensor([0.99, 0.9, 0.8])},
        {"boxes": torch.tensor([[5.0, 5.0, 9.0, 9.0]]), "scores": torch.tensor([0.1])},
    ]
    # Ranked: FP, TP, TP, FP -> precision 1/2 at recall 1/2, 2/3 at recall 1: all-point AP 2/3.
    assert face_ap(_targets(), predictions)["face_AP@0.5-all"] == pytest.approx(2 / 3)


def test_subsets_and_errors():
    target = _targets()[0]
    assert face_subset_mask(target, "all").tolist() == [True, True, False]
    assert face_subset_mask(target, "large").tolist() == [False, False, False]
    with pytest.raises(KeyError, match="unknown face subset"):
        face_subset_mask(target, "tiny")
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}] * 2
    assert math.isnan(face_ap(_targets(), empty, subsets=("large",))["face_AP@0.5-large"])
    with pytest.raises(ValueError, match="targets but"):
        face_ap(_targets(), empty[:1])
