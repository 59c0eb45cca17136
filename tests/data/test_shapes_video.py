"""detkit.data.shapes_video: the tracking video's frames and ground truth agree with its paths."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.data.shapes_video import DEFAULT_PATHS, ShapePath, render_shapes_video_frame, write_shapes_video


def test_the_video_and_its_ground_truth(tmp_path: Path) -> None:
    video, truth_file = write_shapes_video(tmp_path, num_frames=200, image_size=(256, 256))
    truth = json.loads(truth_file.read_text())
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 200 == len(truth["frames"])
    # only the circle and the square of paths 1 and 2 ever meet
    assert {p["object_id"]: p["occludes"] for p in truth["paths"]} == {1: [2], 2: [1], 3: [], 4: [], 5: []}
    visits = {(o["object_id"], o["track_id"]) for frame in truth["frames"] for o in frame}
    by_object = {}
    for object_id, track_id in visits:
        by_object.setdefault(object_id, set()).add(track_id)
    assert len(by_object[3]) == 2  # leaves through the bottom and comes back: two visits
    assert all(len(by_object[i]) == 1 for i in (1, 2, 4, 5))
    # path 4 (the square circling in a corner) is in every frame; its box is around its centre
    for index in (0, 50, 137):
        (four,) = [o for o in truth["frames"][index] if o["object_id"] == 4]
        x1, y1, x2, y2 = four["box"]
        centre = DEFAULT_PATHS[3].centre(index)
        assert abs((x1 + x2) / 2 - centre[0]) < 3 and abs((y1 + y2) / 2 - centre[1]) < 3


def test_a_hidden_part_is_not_in_the_box_and_a_bad_scene_is_refused(tmp_path: Path) -> None:
    background = np.zeros((64, 64, 3), np.uint8)
    under = ShapePath(1, "square", (255, 0, 0), 12, ((0, 20, 32), (10, 20, 32)))
    over = ShapePath(2, "square", (0, 255, 0), 12, ((0, 32, 32), (10, 32, 32)))
    image, objects = render_shapes_video_frame(background, [under, over], 0, min_visible_area=10)
    assert [o["object_id"] for o in objects] == [1, 2]
    assert objects[0]["box"][2] <= objects[1]["box"][0]  # the covered part is cut off the box
    assert tuple(image[32, 32]) == (0, 255, 0)
    with pytest.raises(ValueError, match="object_id twice"):
        write_shapes_video(tmp_path, [under, under], num_frames=1)
    with pytest.raises(ValueError, match="unknown shapes"):
        write_shapes_video(tmp_path, [ShapePath(3, "star", (0, 0, 0), 5, ((0, 5, 5),))], num_frames=1)
