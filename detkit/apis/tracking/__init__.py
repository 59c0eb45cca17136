"""Multi-object tracking: identities for the detections of a video's frames.

* :class:`ByteTracker` (``byte_tracker.py``): ByteTrack's two-stage association of high- and
  low-score detections, track birth and death; ``ByteTracker().update(result)`` returns the
  tracked detections with :attr:`~detkit.utils.result.Result.track_ids`.
* :class:`KalmanFilter` (``kalman.py``): the constant-velocity motion model on (cx, cy, a, h).
* :class:`Track`, :class:`TrackState` (``tracks.py``): one object's state and life cycle.
* :class:`TrackTrails` (``trails.py``): the last centres of each track, for drawing.
* ``matching.py``: box IoU and the thresholded linear assignment (scipy).

    tracker = ByteTracker(track_buffer=30)
    for frame in frames:
        tracked = tracker.update(predictor(frame))  # tracked.track_ids: [K] int64
"""

from detkit.apis.tracking.byte_tracker import ByteTracker
from detkit.apis.tracking.kalman import KalmanFilter, cxcyah_to_xyxy, xyxy_to_cxcyah
from detkit.apis.tracking.matching import box_iou_numpy, linear_assignment
from detkit.apis.tracking.trails import TrackTrails
from detkit.apis.tracking.tracks import Track, TrackState

__all__ = ["ByteTracker", "KalmanFilter", "Track", "TrackState", "TrackTrails", "box_iou_numpy",
           "cxcyah_to_xyxy", "linear_assignment", "xyxy_to_cxcyah"]
