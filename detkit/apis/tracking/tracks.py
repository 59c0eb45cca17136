"""The state of one tracked object: its Kalman state, identity, class and life cycle.

A track's life, as in ByteTrack::

    NEW --(matched the next frame)--> TRACKED <--(matched again)--> LOST --(unmatched for more
     |                                   |                            ^      than the buffer)--> REMOVED
     +--(unmatched the next frame)--> REMOVED       +--(unmatched)----+

A track born on the first frame of a video is TRACKED at once (there is no earlier frame to
confirm it against). A track gets its identity when it is confirmed, so identities count the
objects the tracker reported, without the gaps left by one-frame false positives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from detkit.apis.tracking.kalman import cxcyah_to_xyxy

__all__ = ["Track", "TrackState"]


class TrackState(enum.Enum):
    """Where a track is in its life cycle (see the module docstring)."""

    NEW = "new"
    TRACKED = "tracked"
    LOST = "lost"
    REMOVED = "removed"


@dataclass
class Track:
    """One object followed across frames.

    Attributes:
        mean: ``[8]`` Kalman state (cx, cy, a, h and their velocities per frame), see
            :mod:`detkit.apis.tracking.kalman`.
        covariance: ``[8, 8]``.
        label: Class of the last detection matched (0-based).
        score: Score of the last detection matched.
        start_frame: Frame (1-based, counted by the tracker) the track was born on.
        last_frame: Last frame a detection was matched to it.
        state: :class:`TrackState`.
        track_id: Identity, given when the track is confirmed (None while NEW).
        hits: Frames with a matched detection since birth.
    """

    mean: np.ndarray
    covariance: np.ndarray
    label: int
    score: float
    start_frame: int
    last_frame: int
    state: TrackState = TrackState.NEW
    track_id: int | None = None
    hits: int = 1
    detection_index: int = field(default=-1, repr=False)  # the detection matched this frame, -1: none

    @property
    def box(self) -> np.ndarray:
        """``[4]`` xyxy box of the Kalman state (the prediction until a detection corrects it)."""
        return cxcyah_to_xyxy(self.mean[None])[0]

    @property
    def is_confirmed(self) -> bool:
        """Whether the track has an identity (TRACKED, or LOST after being tracked)."""
        return self.track_id is not None

    def frames_lost(self, frame: int) -> int:
        """Frames since a detection was last matched, at ``frame``."""
        return frame - self.last_frame
