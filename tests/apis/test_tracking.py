"""detkit.apis.tracking: the Kalman filter, the assignment, and ByteTrack on hand-made detections."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from detkit.apis.tracking import (
    ByteTracker, KalmanFilter, TrackState, cxcyah_to_xyxy, linear_assignment, xyxy_to_cxcyah,
)
from detkit.utils.result import Result


def frame(boxes: Sequence[Sequence[float]], scores: Sequence[float],
          labels: Sequence[int] | None = None) -> Result:
    """A frame's detections, as a detector would give them."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return Result(boxes=boxes, scores=np.asarray(scores, np.float32), labels=labels,
                  class_names=[str(label) for label in labels], image_size=(480, 640))


def square(x: float, y: float, size: float = 40.0) -> list[float]:
    return [x, y, x + size, y + size]


def ids_by_box(result: Result) -> dict[float, int]:
    """``{x1: track id}`` of a tracked frame."""
    return {float(box[0]): int(track_id) for box, track_id in zip(result.boxes, result.track_ids)}


# --- the Kalman filter --------------------------------------------------------------------------

def test_box_conversions_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 2.0]])
    np.testing.assert_allclose(xyxy_to_cxcyah(boxes), [[30, 60, 0.5, 80], [0.5, 1.0, 0.5, 2.0]])
    np.testing.assert_allclose(cxcyah_to_xyxy(xyxy_to_cxcyah(boxes)), boxes)


def test_kalman_learns_a_constant_velocity_and_predicts_ahead() -> None:
    kalman = KalmanFilter()
    velocity = np.array([3.0, -2.0, 0.0, 0.5])  # per frame; the height grows too
    start = np.array([100.0, 200.0, 0.75, 40.0])
    mean, covariance = kalman.initiate(start[None])
    assert mean.shape == (1, 8) and covariance.shape == (1, 8, 8)
    np.testing.assert_allclose(mean[0, 4:], 0.0)  # born at rest
    initial_variance = np.diag(covariance[0]).copy()
    for t in range(1, 40):
        mean, covariance = kalman.predict(mean, covariance)
        mean, covariance = kalman.update(mean, covariance, (start + t * velocity)[None])
    np.testing.assert_allclose(mean[0, 4:], velocity, atol=0.05)
    predicted, predicted_cov = kalman.predict(mean, covariance)
    np.testing.assert_allclose(predicted[0, :4], start + 40 * velocity, atol=0.1)
    np.testing.assert_allclose(predicted_cov, np.swapaxes(predicted_cov, 1, 2), atol=1e-9)
    position = [0, 1, 3]  # cx, cy, h (the measured aspect ratio is noisier than its prior)
    assert np.all(np.diag(covariance[0])[position] < initial_variance[position])  # more certain
    # without measurements, the uncertainty of the position grows frame after frame
    grown = [np.diag(predicted_cov[0])[0]]
    for _ in range(3):
        predicted, predicted_cov = kalman.predict(predicted, predicted_cov)
        grown.append(np.diag(predicted_cov[0])[0])
    assert grown == sorted(grown) and grown[0] < grown[-1]


def test_kalman_runs_tracks_independently_in_a_batch() -> None:
    kalman = KalmanFilter()
    measurements = np.array([[10.0, 10.0, 1.0, 20.0], [300.0, 50.0, 0.5, 60.0]])
    mean, covariance = kalman.initiate(measurements)
    mean, covariance = kalman.predict(mean, covariance)
    mean, covariance = kalman.update(mean, covariance, measurements + [[2, 0, 0, 0], [0, 0, 0, 0]])
    alone, alone_cov = kalman.initiate(measurements[1:])
    alone, alone_cov = kalman.predict(alone, alone_cov)
    alone, alone_cov = kalman.update(alone, alone_cov, measurements[1:])
    np.testing.assert_allclose(mean[1], alone[0])
    np.testing.assert_allclose(covariance[1], alone_cov[0])
    assert mean[0, 0] > 10.0 and mean[0, 4] > 0  # pulled towards the measurement, moving right


# --- the assignment -----------------------------------------------------------------------------

def test_assignment_prefers_one_good_pair_and_never_pairs_at_or_above_the_limit() -> None:
    cost = np.array([[0.1, 0.7], [0.7, np.inf]])
    matches, rows, columns = linear_assignment(cost, max_cost=0.8)
    assert matches.tolist() == [[0, 0]] and rows.tolist() == [1] and columns.tolist() == [1]
    matches, rows, columns = linear_assignment(np.array([[0.9, 0.2], [0.3, 0.85]]), max_cost=0.8)
    assert matches.tolist() == [[0, 1], [1, 0]] and len(rows) == len(columns) == 0
    matches, rows, columns = linear_assignment(np.array([[0.8, 0.95]]), max_cost=0.8)
    assert len(matches) == 0 and rows.tolist() == [0] and columns.tolist() == [0, 1]
    matches, rows, columns = linear_assignment(np.zeros((0, 3)), max_cost=0.8)
    assert len(matches) == 0 and columns.tolist() == [0, 1, 2]


# --- ByteTrack ----------------------------------------------------------------------------------

def test_two_crossing_objects_keep_their_identities() -> None:
    tracker = ByteTracker()
    first = last = None
    for t in range(40):  # A goes right, B goes left, a little lower: they overlap mid-way
        a, b = square(20 + 6 * t, 100), square(254 - 6 * t, 110)
        result = tracker.update(frame([b, a] if t % 2 else [a, b], [0.9, 0.85]))
        assert len(result) == 2 and result.track_ids is not None
        ids = {("A" if box[0] == a[0] else "B"): int(i) for box, i in zip(result.boxes, result.track_ids)}
        first = first or ids
        last = ids
    assert first == last == {"A": 1, "B": 2}


def test_a_low_score_detection_continues_a_track_but_starts_none() -> None:
    tracker = ByteTracker(high_thresh=0.5, low_thresh=0.1)
    for t in range(5):
        assert tracker.update(frame([square(100 + 4 * t, 100)], [0.9])).track_ids.tolist() == [1]
    for t in range(5, 9):  # occluded: the detector is unsure
        result = tracker.update(frame([square(100 + 4 * t, 100), square(400, 300)], [0.3, 0.35]))
        assert result.track_ids.tolist() == [1]  # the lone low-score box at (400, 300): no track
        assert result.scores.tolist() == pytest.approx([0.3])
    assert tracker.update(frame([square(136, 100)], [0.9])).track_ids.tolist() == [1]
    assert tracker.update(frame([square(400, 300)], [0.05])).track_ids.tolist() == []  # below low


def test_ids_stay_through_missing_frames_and_a_track_lost_too_long_is_replaced() -> None:
    tracker = ByteTracker(track_buffer=5)
    for t in range(6):
        tracker.update(frame([square(100 + 5 * t, 100)], [0.9]))
    for _ in range(4):  # missed for 4 frames (within the buffer); the object keeps moving
        assert len(tracker.update(frame([], []))) == 0
    assert [t.state for t in tracker.tracks] == [TrackState.LOST]
    # 10 frames after the last match, at the place its velocity predicts
    assert tracker.update(frame([square(100 + 5 * 10, 100)], [0.9])).track_ids.tolist() == [1]

    for _ in range(6):  # lost for 6 frames > track_buffer: removed
        tracker.update(frame([], []))
    assert tracker.tracks == []
    tracker.update(frame([square(150, 100)], [0.9]))  # born, not confirmed yet
    assert tracker.update(frame([square(150, 100)], [0.9])).track_ids.tolist() == [2]


def test_a_one_frame_false_positive_is_not_reported_and_takes_no_identity() -> None:
    tracker = ByteTracker()
    tracker.update(frame([square(10, 10)], [0.9]))  # the first frame: confirmed at once
    result = tracker.update(frame([square(10, 10), square(300, 300)], [0.9, 0.95]))
    assert result.track_ids.tolist() == [1] and result.boxes[0, 0] == 10
    tracker.update(frame([square(10, 10)], [0.9]))  # the false positive is gone: its track too
    tracker.update(frame([square(10, 10), square(200, 200)], [0.9, 0.9]))
    result = tracker.update(frame([square(10, 10), square(200, 200)], [0.9, 0.9]))
    assert result.track_ids.tolist() == [1, 2]  # the next real object gets 2, not 3


def test_per_class_association_keeps_classes_apart() -> None:
    agnostic, per_class = ByteTracker(), ByteTracker(per_class=True)
    for tracker in (agnostic, per_class):
        tracker.update(frame([square(50, 50)], [0.9], [0]))
        tracker.update(frame([square(52, 50)], [0.9], [0]))
    # the same place, another class: the same object relabelled, or another object
    assert agnostic.update(frame([square(54, 50)], [0.9], [2])).track_ids.tolist() == [1]
    assert agnostic.tracks[0].label == 2
    assert per_class.update(frame([square(54, 50)], [0.9], [2])).track_ids.tolist() == []
    assert per_class.update(frame([square(56, 50)], [0.9], [2])).track_ids.tolist() == [2]


def test_the_tracked_result_carries_masks_and_keeps_the_detection_order() -> None:
    tracker = ByteTracker()
    detections = frame([square(10, 10), square(100, 10), square(200, 10)], [0.9, 0.05, 0.8])
    detections.masks = np.zeros((3, 480, 640), bool)
    detections.masks[2, 0, 0] = True
    result = tracker.update(detections)
    assert result.boxes[:, 0].tolist() == [10, 200] and result.track_ids.tolist() == [1, 2]
    assert result.masks.shape == (2, 480, 640) and result.masks[1, 0, 0]
    assert [e["track_id"] for e in result.to_coco(0)] == [1, 2]
    assert "track_ids=[2]" in repr(result)
    tracker.reset()
    assert tracker.tracks == [] and tracker.update(detections).track_ids.tolist() == [1, 2]


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("high_thresh", 1.5, "high_thresh must be in"),
    ("low_thresh", 0.7, "low_thresh \\(0.7\\) must not exceed high_thresh"),
    ("track_buffer", -1, "track_buffer must be"),
    ("match_thresh", -0.1, "match_thresh must be in"),
])
def test_bad_settings_name_the_argument(keyword: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ByteTracker(**{keyword: value})
