"""Tracking on video: annotate_video(tracker=), track colours and trails, ``detkit infer --track``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from apis_testing import detkit_threads, video_properties, write_clip
from apis_toys import TOY_DETECTIONS

from detkit.apis import Predictor, Result
from detkit.apis.tracking import ByteTracker, TrackTrails
from detkit.apis.video import VideoReader, annotate_video
from detkit.cli import main as detkit_main
from detkit.utils.visualization import class_color, draw_predictions, track_color

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "fixtures" / "configs" / "apis" / "toy_detector.py"


def tracked_result(track_ids: list[int], labels: list[int]) -> Result:
    boxes = np.array([[10, 10, 40, 40], [60, 20, 90, 60]], np.float32)[:len(track_ids)]
    return Result(boxes=boxes, scores=np.full(len(boxes), 0.9, np.float32),
                  labels=np.array(labels, np.int64), class_names=["a"] * len(boxes),
                  image_size=(100, 120), track_ids=np.array(track_ids, np.int64))


def has_color(image: np.ndarray, color: tuple[int, int, int]) -> bool:
    """Whether any pixel has exactly ``color`` (the label backgrounds are filled with it)."""
    return bool((image == np.array(color, np.uint8)).all(axis=2).any())


def near_color(region: np.ndarray, color: tuple[int, int, int], tolerance: int = 60) -> bool:
    """Whether a pixel of ``region`` is close to ``color`` (lines are anti-aliased)."""
    return bool((np.abs(region.astype(int) - color).max(axis=2) <= tolerance).any())


def test_tracks_are_drawn_in_the_colour_of_their_identity_with_a_trail() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    first = draw_predictions(image, tracked_result([7, 3], [0, 0]))
    # same label, different identities: different colours
    assert has_color(first, track_color(7)) and has_color(first, track_color(3))
    assert not has_color(first, class_color(0))
    relabelled = draw_predictions(image, tracked_result([7], [2]))  # the class changed, not the id
    assert has_color(relabelled, track_color(7)) and not has_color(relabelled, class_color(2))
    untracked = tracked_result([7], [2])
    untracked.track_ids = None
    assert has_color(draw_predictions(image, untracked), class_color(2))

    trails = TrackTrails(length=3)
    for shift in (0, 20, 40):  # track 5 moves right along y = 80; its last 3 centres are kept
        result = Result(boxes=np.array([[10 + shift, 75, 20 + shift, 85]], np.float32),
                        scores=np.array([0.9], np.float32), labels=np.array([0]), class_names=["a"],
                        image_size=(100, 120), track_ids=np.array([5]))
        drawn = trails(image, result)
    assert trails.trail(5) == [(15.0, 80.0), (35.0, 80.0), (55.0, 80.0)]
    assert near_color(drawn[78:83, 23:28], track_color(5))  # between the first two centres: the trail
    assert not draw_predictions(image, result)[78:83, 23:28].any()  # no trail given: nothing there
    for _ in range(3):  # unseen for `length` frames: forgotten
        trails.update(Result.from_prediction({"boxes": np.zeros((0, 4))}, (100, 120)))
    assert trails.trail(5) == []


def test_annotate_video_tracks_the_frames_in_order(predictor: Predictor, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", frames=9, size=(64, 48))
    seen: list[Result] = []
    run = annotate_video(predictor, VideoReader(clip), tmp_path / "out.mp4", batch_size=4,
                         on_results=lambda first, frames, results: seen.extend(results),
                         tracker=ByteTracker())
    assert run.frames == 9 and video_properties(run.output_path)[0] == 9
    # the toy's boxes score 0.9, 0.6 and 0.3: the first two are tracked from the first frame on,
    # 0.3 is below the tracker's new-track threshold and starts no track
    assert [r.track_ids.tolist() for r in seen] == [[1, 2]] * 9
    assert [r.scores.tolist() for r in seen[:1]] == [pytest.approx([0.9, 0.6])]
    assert detkit_threads() == []


def test_infer_track_writes_track_ids_for_video_frames_only(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_clip(tmp_path / "clip.avi", frames=6, fps=8.0, size=(64, 48))
    cv2.imwrite(str(tmp_path / "still.png"), np.full((40, 50, 3), 90, np.uint8))
    out = tmp_path / "out"
    status = detkit_main(["infer", str(CONFIG), "none", str(tmp_path / "clip.avi"),
                          str(tmp_path / "still.png"), "--out", str(out), "--track",
                          "--track-buffer", "10", "--trail-length", "4", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    assert video_properties(out / "clip.mp4") == (6, 8.0, (64, 48))
    records = json.loads((out / "predictions.json").read_text())
    frames = [r for r in records if "frame_index" in r]
    assert [(r["frame_index"], r["track_id"], r["category_name"]) for r in frames] == [
        (i, track_id, name) for i in range(6) for track_id, name in ((1, "cat"), (2, "dog"))]
    stills = [r for r in records if r["file_name"].endswith("still.png")]
    # images are not tracked and keep the display threshold (0.3): all three toy boxes
    assert len(stills) == len(TOY_DETECTIONS) and not any("track_id" in r for r in stills)

    without = tmp_path / "plain"
    assert detkit_main(["infer", str(CONFIG), "none", str(tmp_path / "clip.avi"), "--out",
                        str(without), "--no-progress"]) == 0
    assert not any("track_id" in r for r in json.loads((without / "predictions.json").read_text()))


def test_infer_track_bad_options_are_one_line_errors(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    clip = write_clip(tmp_path / "clip.avi", frames=2)
    status = detkit_main(["infer", str(CONFIG), "none", str(clip), "--out", str(tmp_path / "o"),
                          "--track", "--track-low-thresh", "0.8", "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "--track-low-thresh (0.8) must not exceed --track-high-thresh (0.5)" in error
    status = detkit_main(["infer", str(CONFIG), "none", str(clip), "--out", str(tmp_path / "o"),
                          "--track", "--trail-length", "-1", "--no-progress"])
    assert status == 2 and "--trail-length must be >= 0" in capsys.readouterr().err
