"""The recent path of each track, drawn behind its box: a short trail of its last box centres.

:class:`TrackTrails` is also the drawing function :func:`detkit.apis.video.annotate_video` takes
(``draw(frame, result)``): it must see the frames in order, which the video writer thread does.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from detkit.utils.result import Result
from detkit.utils.visualization import draw_predictions

__all__ = ["TrackTrails"]


class TrackTrails:
    """The last ``length`` box centres of every track, and a drawer of tracked frames.

    Args:
        length: Centres kept per track (the trail's length in frames); 0 draws no trails.
        show_scores: Put the score after the class name in the labels.

    Raises:
        ValueError: A negative ``length``.
    """

    def __init__(self, length: int = 30, *, show_scores: bool = True) -> None:
        if length < 0:
            raise ValueError(f"TrackTrails: length must be >= 0, got {length}")
        self.length = int(length)
        self.show_scores = show_scores
        self.frame = 0
        self._centres: dict[int, deque[tuple[float, float]]] = {}
        self._last_seen: dict[int, int] = {}

    def update(self, result: Result) -> dict[int, list[tuple[float, float]]]:
        """Add the centres of a frame's tracked detections; forget tracks unseen for ``length`` frames.

        Args:
            result: A tracked result (``track_ids`` set; an untracked one adds nothing).

        Returns:
            ``{track_id: [(x, y), ...]}`` oldest first, for the tracks of this frame.
        """
        self.frame += 1
        track_ids = [] if result.track_ids is None or self.length == 0 else result.track_ids.tolist()
        boxes = np.asarray(result.boxes, dtype=np.float64).reshape(-1, 4)
        for track_id, box in zip(track_ids, boxes):
            centres = self._centres.setdefault(track_id, deque(maxlen=self.length))
            centres.append((float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2))
            self._last_seen[track_id] = self.frame
        for track_id in [t for t, seen in self._last_seen.items() if self.frame - seen >= self.length]:
            del self._centres[track_id], self._last_seen[track_id]
        return {track_id: list(self._centres[track_id]) for track_id in track_ids}

    def trail(self, track_id: int) -> list[tuple[float, float]]:
        """The centres kept for ``track_id``, oldest first (empty for a track not kept)."""
        return list(self._centres.get(track_id, ()))

    def __call__(self, frame: np.ndarray, result: Result) -> np.ndarray:
        """``draw(frame, result)`` for :func:`~detkit.apis.video.annotate_video`: the boxes in
        their track's colour, labelled ``#id class score``, over their trails."""
        return draw_predictions(frame, result, trails=self.update(result), show_scores=self.show_scores)
