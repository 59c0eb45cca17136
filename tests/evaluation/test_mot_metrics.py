"""detkit.evaluation.mot_metrics: MOTA, identity switches and IDF1 on hand-worked videos."""

from __future__ import annotations

import numpy as np
import pytest

from detkit.evaluation import MOTAccumulator, evaluate_mot


def box(x: float, y: float = 0.0, size: float = 10.0) -> list[float]:
    return [x, y, x + size, y + size]


def boxes(*items: list[float]) -> np.ndarray:
    return np.array(items, np.float64).reshape(-1, 4)


def test_mota_idsw_and_idf1_on_a_hand_worked_video() -> None:
    # Two objects, 1 at x=0.. and 2 at x=100..; four frames.
    # frame 0: both tracked (tracks 10 and 20)                         -> 2 matches
    # frame 1: object 2 missed                                          -> 1 FN
    # frame 2: object 2 comes back as track 30 (a switch: it was 20);
    #          track 40 on nothing                                      -> 1 IDSW, 1 FP
    # frame 3: object 2 has left; 1 still tracked by 10                 -> 1 match
    ground_truth = [([1, 2], boxes(box(0), box(100))), ([1, 2], boxes(box(2), box(98))),
                    ([1, 2], boxes(box(4), box(96))), ([1], boxes(box(6)))]
    predictions = [([10, 20], boxes(box(0), box(101))), ([10], boxes(box(2))),
                   ([10, 30, 40], boxes(box(4), box(96), box(300))), ([10], boxes(box(6)))]
    result = evaluate_mot(ground_truth, predictions)
    # GT = 2 + 2 + 2 + 1 = 7; MOTA = 1 - (FN 1 + FP 1 + IDSW 1) / 7
    assert (result.num_ground_truth, result.num_predictions) == (7, 7)
    assert (result.false_negatives, result.false_positives, result.id_switches) == (1, 1, 1)
    assert result.matches == 2 + 1 + 2 + 1 and result.num_frames == 4
    assert result.mota == pytest.approx(4 / 7)
    assert result.switches_by_object == {1: 0, 2: 1}
    # IDF1: 1<->10 overlap 4 frames, 2<->20 one, 2<->30 one; the best pairing keeps 4 + 1 = 5
    assert result.id_true_positives == 5
    assert result.idf1 == pytest.approx(2 * 5 / (7 + 7))
    # MOTP: mean IoU of the pairs; all exact but frame 0's object 2 (IoU 90 / 110)
    assert result.motp == pytest.approx((5 + 90 / 110) / 6)
    assert result.precision == pytest.approx(6 / 7) and result.recall == pytest.approx(6 / 7)
    assert "MOTA 0.571" in result.summary() and "IDSW 1" in result.summary()


def test_a_kept_match_is_not_a_switch_even_when_a_neighbour_fits_better() -> None:
    accumulator = MOTAccumulator(iou_thresh=0.5)
    accumulator.update([1], boxes(box(0)), ["a"], boxes(box(0)))
    # track "a" drifts (IoU 8/12 = 0.67, still allowed); track "b" sits exactly on the object
    accumulator.update([1], boxes(box(0)), ["a", "b"], boxes(box(2), box(0)))
    result = accumulator.result()
    assert result.id_switches == 0 and result.false_positives == 1 and result.matches == 2
    # below the threshold the old match breaks: "b" takes over, a switch
    accumulator.update([1], boxes(box(0)), ["a", "b"], boxes(box(6), box(0)))
    assert accumulator.result().id_switches == 1


def test_a_switch_counts_against_the_last_match_ever_and_every_possible_pair_is_made() -> None:
    accumulator = MOTAccumulator()
    accumulator.update([1], boxes(box(0)), ["a"], boxes(box(0)))
    accumulator.update([1], boxes(box(0)), [], boxes())  # missed: not a switch yet
    accumulator.update([1], boxes(box(0)), ["a"], boxes(box(0)))  # back on "a": no switch
    assert accumulator.result().id_switches == 0
    # two objects, two tracks: "p" overlaps both objects, "q" only object 1: both get paired
    accumulator = MOTAccumulator(iou_thresh=0.3)
    accumulator.update([1, 2], boxes(box(0), box(6)), ["p", "q"], boxes(box(3), box(0)))
    assert accumulator.result().matches == 2


def test_empty_frames_and_bad_input() -> None:
    result = evaluate_mot([([], boxes())], [([], boxes())])
    assert result.num_ground_truth == 0 and np.isnan(result.mota)
    with pytest.raises(ValueError, match="1 ground-truth frames but 2 predicted frames"):
        evaluate_mot([([], boxes())], [([], boxes()), ([], boxes())])
    with pytest.raises(ValueError, match="2 gt_ids but 1 gt_boxes"):
        MOTAccumulator().update([1, 2], boxes(box(0)), [], boxes())
    with pytest.raises(ValueError, match="an id twice among the predicted_ids"):
        MOTAccumulator().update([], boxes(), [5, 5], boxes(box(0), box(1)))
    with pytest.raises(ValueError, match="iou_thresh must be in"):
        MOTAccumulator(iou_thresh=0.0)
