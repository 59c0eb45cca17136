"""A synthetic video of shapes moving on known paths, with ground-truth identities and boxes.

For tracking benchmarks and tests: the shapes of :mod:`detkit.data.shapes` (drawn by its renderer's
helper, exact masks, no anti-aliasing) move along piecewise-linear paths over a fixed noisy
gradient; some cross (one hides part of the other), some leave the frame and come back.

Ground truth per frame, as in the shapes dataset: an object's box is the bounding box of its
*visible* mask (later paths hide earlier ones; pixels outside the frame are not visible), and an
object with fewer than ``min_visible_area`` visible pixels is not annotated. Identities:

* ``object_id``: the physical object (its path);
* ``track_id``: one *visit* of it: an object that leaves the frame (or is hidden) and comes back
  gets a new ``track_id``, since a tracker without appearance features cannot know it is the same
  object -- these are the identities a tracker is scored against.

Each path also lists the other paths it ever overlaps (``occludes``: their full masks touch in
some frame), which tells the crossing paths from those that never meet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .shapes import SHAPE_CLASSES, _background, _draw_shape  # the shapes renderer's own drawing

__all__ = ["DEFAULT_PATHS", "ShapePath", "render_shapes_video_frame", "write_shapes_video"]


@dataclass(frozen=True)
class ShapePath:
    """One shape moving through the video.

    Attributes:
        object_id: The object's identity (distinct per path).
        shape: ``"circle"``, ``"square"`` or ``"triangle"``.
        color: RGB.
        radius: Circumradius in pixels.
        waypoints: ``(frame, x, y)`` centres, frames increasing; the centre moves linearly between
            them, and the object exists from the first waypoint's frame to the last's.
        spin: Rotation in radians per frame.
    """

    object_id: int
    shape: str
    color: tuple[int, int, int]
    radius: float
    waypoints: tuple[tuple[float, float, float], ...]
    spin: float = 0.0

    def centre(self, frame: int) -> np.ndarray | None:
        """``[2]`` (x, y) at ``frame``, or None when the object does not exist then."""
        frames = [w[0] for w in self.waypoints]
        if frame < frames[0] or frame > frames[-1]:
            return None
        return np.array([np.interp(frame, frames, [w[1] for w in self.waypoints]),
                         np.interp(frame, frames, [w[2] for w in self.waypoints])])


# A 200-frame scene on 256x256: 1 and 2 cross (2 passes over 1); 3 leaves through the bottom
# and comes back; 4 circles in a corner; 5 comes in from the right. Only 1 and 2 ever meet.
DEFAULT_PATHS: tuple[ShapePath, ...] = (
    ShapePath(1, "circle", (220, 40, 40), 20, ((0, -25, 60), (200, 281, 60))),
    ShapePath(2, "square", (40, 70, 230), 22, ((45, 128, -25), (200, 128, 214.5)), spin=0.02),
    ShapePath(3, "triangle", (40, 200, 60), 20, ((0, 40, 200), (50, 40, 290), (110, 40, 290),
                                                 (200, 40, 150)), spin=-0.03),
    *(ShapePath(4, "square", (230, 210, 40), 18, tuple(
        (t, 205 + 30 * np.cos(2 * np.pi * t / 100), 195 + 30 * np.sin(2 * np.pi * t / 100))
        for t in range(0, 201, 5)), spin=0.04),),
    ShapePath(5, "circle", (170, 60, 200), 16, ((100, 281, 120), (253, -25, 120))),
)


def render_shapes_video_frame(background: np.ndarray, paths: Sequence[ShapePath], frame: int,
                              min_visible_area: int = 100) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw frame ``frame``: each path's shape at its centre, later paths on top.

    Args:
        background: ``[H, W, 3]`` uint8 RGB (copied).
        paths: The moving shapes.
        frame: Frame index.
        min_visible_area: Objects with fewer visible pixels are not annotated.

    Returns:
        ``(image [H, W, 3] uint8 RGB, objects)``: per annotated object ``{"object_id", "label",
        "box": [x1, y1, x2, y2]}`` (visible-mask box, continuous pixels), and ``"full_mask"``
        (``[H, W]`` bool, the unoccluded shape, for the overlap of paths).
    """
    image = background.copy()
    height, width = image.shape[:2]
    drawn = []
    for path in paths:
        centre = path.centre(frame)
        if centre is None:
            continue
        angle = path.spin * frame
        _draw_shape(image, path.shape, centre, path.radius, angle, path.color)
        mask = np.zeros((height, width), np.uint8)
        _draw_shape(mask, path.shape, centre, path.radius, angle, 1)
        for _, visible, _ in drawn:
            visible[mask == 1] = 0
        drawn.append((path, mask, mask.astype(bool)))
    objects = []
    for path, visible, full in drawn:
        if int(visible.sum()) < min_visible_area:
            continue
        ys, xs = np.nonzero(visible)
        objects.append({"object_id": path.object_id, "label": SHAPE_CLASSES.index(path.shape),
                        "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                        "full_mask": full})
    return image, objects


def write_shapes_video(out_dir: str | Path, paths: Sequence[ShapePath] = DEFAULT_PATHS,
                       num_frames: int = 200, image_size: tuple[int, int] = (256, 256),
                       fps: float = 25.0, seed: int = 0, min_visible_area: int = 100) -> tuple[Path, Path]:
    """Write ``shapes_tracks.avi`` (Motion-JPEG, in every OpenCV) and ``shapes_tracks.json``.

    The json: ``{"fps", "width", "height", "num_frames", "class_names", "paths": [{"object_id",
    "shape", "occludes": [object ids]}], "frames": [[{"track_id", "object_id", "label", "box"},
    ...] per frame]}``.

    Args:
        out_dir: Created if needed.
        paths: The moving shapes (see :data:`DEFAULT_PATHS`).
        num_frames: Frames written.
        image_size: ``(height, width)``.
        fps: Frame rate of the file.
        seed: Seed of the background.
        min_visible_area: Objects with fewer visible pixels are not annotated.

    Returns:
        ``(video path, json path)``.

    Raises:
        ValueError: Two paths with one ``object_id``, or a shape not in :data:`SHAPE_CLASSES`.
        OSError: OpenCV cannot write the video.
    """
    ids = [p.object_id for p in paths]
    if len(set(ids)) != len(ids):
        raise ValueError(f"write_shapes_video: object_id twice in paths: {ids}")
    unknown = [p.shape for p in paths if p.shape not in SHAPE_CLASSES]
    if unknown:
        raise ValueError(f"write_shapes_video: unknown shapes {unknown}; choose from {SHAPE_CLASSES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = image_size
    background = _background(np.random.default_rng(seed), height, width)
    video_path, json_path = out_dir / "shapes_tracks.avi", out_dir / "shapes_tracks.json"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write Motion-JPEG video {video_path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    frames: list[list[dict[str, Any]]] = []
    occludes: dict[int, set[int]] = {i: set() for i in ids}
    visit: dict[int, int] = {}  # object id -> its current track id
    last_seen: dict[int, int] = {}
    next_track = 1
    try:
        for index in range(num_frames):
            image, objects = render_shapes_video_frame(background, paths, index, min_visible_area)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            for a in objects:
                for b in objects:
                    if a is not b and (a["full_mask"] & b["full_mask"]).any():
                        occludes[a["object_id"]].add(b["object_id"])
            records = []
            for obj in objects:
                object_id = obj["object_id"]
                if last_seen.get(object_id) != index - 1:  # first seen, or back after a gap
                    visit[object_id], next_track = next_track, next_track + 1
                last_seen[object_id] = index
                records.append({"track_id": visit[object_id], "object_id": object_id,
                                "label": obj["label"], "box": obj["box"]})
            frames.append(records)
    finally:
        writer.release()
    json_path.write_text(json.dumps({
        "fps": fps, "width": width, "height": height, "num_frames": num_frames,
        "class_names": list(SHAPE_CLASSES),
        "paths": [{"object_id": p.object_id, "shape": p.shape, "occludes": sorted(occludes[p.object_id])}
                  for p in paths],
        "frames": frames}) + "\n")
    return video_path, json_path
