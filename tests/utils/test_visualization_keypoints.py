"""Keypoints on results and in drawings: dots, skeleton lines, thresholds."""

from __future__ import annotations

import numpy as np
import torch

from detkit.apis.result import Result
from detkit.utils.visualization import LANDMARK_COLORS, class_color, draw_predictions


def _prediction() -> dict[str, torch.Tensor]:
    keypoints = torch.tensor([[[20.0, 50.0, 1.0], [100.0, 50.0, 1.0], [100.0, 90.0, 1.0], [20.0, 90.0, 0.0]]])
    return {"boxes": torch.tensor([[5.0, 35.0, 115.0, 98.0]]), "labels": torch.tensor([2]),
            "scores": torch.tensor([0.9]), "keypoints": keypoints,
            "keypoint_scores": torch.tensor([[5.0, 5.0, -3.0, 5.0]])}


def close_to(pixel: np.ndarray, color: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(color)).max() <= tolerance)


def test_result_carries_keypoints():
    result = Result.from_prediction(_prediction(), (100, 120), ["a", "b", "c"], skeleton=[[0, 1], [1, 2]])
    assert result.keypoints.shape == (1, 4, 3) and result.keypoints.dtype == np.float32
    assert result.keypoint_scores.shape == (1, 4) and result.skeleton == [(0, 1), (1, 2)]
    assert "keypoints=[1, 4, 3]" in repr(result)
    assert result.select([]).keypoints.shape == (0, 4, 3)
    entry = result.to_coco(7)[0]
    assert entry["keypoints"][:6] == [20.0, 50.0, 1.0, 100.0, 50.0, 1.0] and len(entry["keypoints"]) == 12


def test_draws_keypoints_and_skeleton_above_the_threshold():
    image = np.full((100, 120, 3), 50, np.uint8)
    result = Result.from_prediction(_prediction(), (100, 120), ["a", "b", "c"])
    plain = draw_predictions(image, Result.from_prediction({k: v for k, v in _prediction().items()
                                                            if "keypoint" not in k}, (100, 120)))
    out = draw_predictions(image, result, skeleton=[(0, 1), (1, 2), (2, 3), (3, 0)])
    assert close_to(out[50, 20], LANDMARK_COLORS[0]) and close_to(out[50, 100], LANDMARK_COLORS[1])
    assert close_to(out[50, 60], class_color(2))  # the line 0-1, in the detection's colour
    assert not close_to(plain[50, 60], class_color(2))
    # keypoint 2's score is below the threshold (0), keypoint 3 is not visible: neither drawn,
    # nor the lines that end there
    assert (out[90, 100] == plain[90, 100]).all() and (out[90, 20] == plain[90, 20]).all()
    assert (out[70, 100] == plain[70, 100]).all() and (out[90, 60] == plain[90, 60]).all()
    low = draw_predictions(image, result, skeleton=[(1, 2)], keypoint_threshold=-10.0)
    assert close_to(low[70, 100], class_color(2)) and close_to(low[90, 100], LANDMARK_COLORS[2])
    # the result's own skeleton is the default
    own = draw_predictions(image, Result.from_prediction(_prediction(), (100, 120), skeleton=[(0, 1)]))
    assert close_to(own[50, 60], class_color(2))
