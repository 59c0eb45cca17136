"""ByteTrack: multi-object tracking by associating every detection box, high and low scores alike.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box" (ECCV 2022).
Each frame, every live track is moved one frame ahead by its Kalman filter
(:mod:`~detkit.apis.tracking.kalman`), then:

1. **High-score detections** (``score >= high_thresh``) are matched to the confirmed tracks, those
   tracked on the last frame and those lost for at most ``track_buffer`` frames, by IoU between
   the predicted and detected boxes (cost ``1 - IoU``, times the detection's score with
   ``fuse_score``; pairs costing ``match_thresh`` or more are never made). A lost track that is
   matched comes back with its identity.
2. **Low-score detections** (``low_thresh <= score < high_thresh``: mostly occluded or blurred
   objects, which a plain score threshold throws away) are matched to the tracks of the last
   frame still unmatched, by IoU alone (cost below 0.5). Tracks still unmatched become lost.
3. The tracks born on the last frame and not yet confirmed are matched to the high-score
   detections left (cost below 0.7); those unmatched are removed.
4. A high-score detection still unmatched and scoring at least ``new_track_thresh`` starts a
   track (confirmed at once on the first frame); lost tracks older than ``track_buffer`` frames are
   removed, and of a tracked and a lost track on the same object (IoU above 0.85, and of the same
   class with ``per_class``) the younger goes.

The tracker reports the detections matched to confirmed tracks this frame, with their identity
(:attr:`Result.track_ids`); a detection left unmatched is not reported. Identities are 1, 2, 3...
in order of confirmation, per tracker: make one tracker per video.
"""

from __future__ import annotations

import numpy as np

from detkit.apis.tracking.kalman import KalmanFilter, xyxy_to_cxcyah
from detkit.apis.tracking.matching import box_iou_numpy, linear_assignment
from detkit.apis.tracking.tracks import Track, TrackState
from detkit.utils.result import Result

__all__ = ["ByteTracker"]

# From ByteTrack: the costs below which the second (low-score) and third (unconfirmed)
# associations pair, and the IoU above which a tracked and a lost track are the same object.
_LOW_SCORE_MAX_COST = 0.5
_UNCONFIRMED_MAX_COST = 0.7
_DUPLICATE_IOU = 0.85


class ByteTracker:
    """Follow the detections of a video's frames, giving each object an identity.

    Args:
        high_thresh: Detections scoring at least this go to the first association and may start
            tracks.
        low_thresh: Detections scoring at least this (and below ``high_thresh``) go to the second
            association; lower ones are ignored. Run the detector with a score threshold at most
            this one (:attr:`detector_score_thresh`).
        new_track_thresh: A high-score detection matched to no track starts one when it scores at
            least this.
        match_thresh: Largest cost ``1 - IoU`` (``1 - IoU * score`` with ``fuse_score``) of a
            pair in the first association.
        track_buffer: Frames a lost track is kept, waiting to be matched again, before it is
            removed.
        per_class: Match tracks only to detections of their own class; False (default): any
            class, and a track takes the class of its latest detection.
        fuse_score: Weigh the IoU of the first association by the detection score (ByteTrack's
            default, which prefers confident detections when boxes overlap alike).

    Raises:
        ValueError: A threshold outside [0, 1], ``low_thresh > high_thresh``, or a negative
            ``track_buffer``, naming the argument.
    """

    def __init__(self, high_thresh: float = 0.5, low_thresh: float = 0.1, new_track_thresh: float = 0.6,
                 match_thresh: float = 0.8, track_buffer: int = 30, *, per_class: bool = False,
                 fuse_score: bool = True) -> None:
        for name, value in (("high_thresh", high_thresh), ("low_thresh", low_thresh),
                            ("new_track_thresh", new_track_thresh), ("match_thresh", match_thresh)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"ByteTracker: {name} must be in [0, 1], got {value}")
        if low_thresh > high_thresh:
            raise ValueError(f"ByteTracker: low_thresh ({low_thresh}) must not exceed high_thresh "
                             f"({high_thresh})")
        if int(track_buffer) != track_buffer or track_buffer < 0:
            raise ValueError(f"ByteTracker: track_buffer must be a whole number of frames >= 0, "
                             f"got {track_buffer}")
        self.high_thresh = float(high_thresh)
        self.low_thresh = float(low_thresh)
        self.new_track_thresh = float(new_track_thresh)
        self.match_thresh = float(match_thresh)
        self.track_buffer = int(track_buffer)
        self.per_class = bool(per_class)
        self.fuse_score = bool(fuse_score)
        self.kalman = KalmanFilter()
        self.reset()

    @property
    def detector_score_thresh(self) -> float:
        """The lowest score the tracker uses: the score threshold to run the detector with."""
        return self.low_thresh

    def reset(self) -> None:
        """Forget every track and restart identities at 1 (a new video)."""
        self.frame = 0
        self.tracks: list[Track] = []  # every live track: NEW, TRACKED or LOST
        self._next_id = 1

    @property
    def active_tracks(self) -> list[Track]:
        """The confirmed tracks matched on the last frame."""
        return [t for t in self.tracks if t.state is TrackState.TRACKED and t.is_confirmed]

    def update(self, result: Result) -> Result:
        """Track the detections of the next frame.

        Args:
            result: The detections of the frame (``boxes [N, 4]`` xyxy pixels, ``scores [N]``,
                ``labels [N]``), frames passed in order; a frame with no detections too.

        Returns:
            The detections matched to confirmed tracks (a selection of ``result``, masks and
            landmarks carried along, order kept), with ``track_ids [K]`` int64.
        """
        self.frame += 1
        scores = np.asarray(result.scores, dtype=np.float64).reshape(-1)
        boxes = np.asarray(result.boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(result.labels, dtype=np.int64).reshape(-1)
        high = np.flatnonzero(scores >= self.high_thresh)
        low = np.flatnonzero((scores >= self.low_thresh) & (scores < self.high_thresh))

        for track in self.tracks:
            track.detection_index = -1
        self._predict(self.tracks)
        pool = [t for t in self.tracks if t.state in (TrackState.TRACKED, TrackState.LOST)]
        unconfirmed = [t for t in self.tracks if t.state is TrackState.NEW]

        # 1. confirmed tracks (tracked and lost) with the high-score detections
        left_tracks, left_high = self._associate(pool, high, boxes, scores, labels,
                                                 self.match_thresh, self.fuse_score)
        # 2. tracks of the last frame still unmatched with the low-score detections
        recent = [t for t in left_tracks if t.state is TrackState.TRACKED]
        unmatched, _ = self._associate(recent, low, boxes, scores, labels, _LOW_SCORE_MAX_COST, False)
        for track in unmatched:
            track.state = TrackState.LOST
        # 3. tracks born on the last frame with the high-score detections left
        unmatched, left_high = self._associate(unconfirmed, left_high, boxes, scores, labels,
                                               _UNCONFIRMED_MAX_COST, self.fuse_score)
        for track in unmatched:
            track.state = TrackState.REMOVED
        # 4. births and deaths
        self._start_tracks(left_high[scores[left_high] >= self.new_track_thresh], boxes, scores, labels)
        for track in self.tracks:
            if track.state is TrackState.LOST and track.frames_lost(self.frame) > self.track_buffer:
                track.state = TrackState.REMOVED
        self._remove_duplicates()
        self.tracks = [t for t in self.tracks if t.state is not TrackState.REMOVED]

        reported = sorted((t.detection_index, t.track_id) for t in self.active_tracks
                          if t.detection_index >= 0)
        picked = np.array([index for index, _ in reported], dtype=np.int64)
        tracked = result.select(picked)
        tracked.track_ids = np.array([track_id for _, track_id in reported], dtype=np.int64)
        return tracked

    def _predict(self, tracks: list[Track]) -> None:
        """Move every track one frame ahead (a track not tracked last frame stops growing)."""
        if not tracks:
            return
        mean = np.stack([t.mean for t in tracks])
        covariance = np.stack([t.covariance for t in tracks])
        not_tracked = np.array([t.state is not TrackState.TRACKED for t in tracks])
        mean[not_tracked, 7] = 0.0  # ByteTrack: a lost box keeps its height
        mean, covariance = self.kalman.predict(mean, covariance)
        for track, m, c in zip(tracks, mean, covariance):
            track.mean, track.covariance = m, c

    def _associate(self, tracks: list[Track], detections: np.ndarray, boxes: np.ndarray,
                   scores: np.ndarray, labels: np.ndarray, max_cost: float,
                   fuse_score: bool) -> tuple[list[Track], np.ndarray]:
        """Match ``tracks`` to the detections of index ``detections``; update the matched tracks.

        Returns:
            The tracks left unmatched, and the indices of the detections left unmatched.
        """
        if not tracks or len(detections) == 0:
            return list(tracks), detections
        similarity = box_iou_numpy(np.stack([t.box for t in tracks]), boxes[detections])
        if fuse_score:
            similarity = similarity * scores[detections][None, :]
        cost = 1.0 - similarity
        if self.per_class:
            same_class = np.array([t.label for t in tracks])[:, None] == labels[detections][None, :]
            cost[~same_class] = np.inf
        matches, unmatched_tracks, unmatched_detections = linear_assignment(cost, max_cost)
        if len(matches):
            matched = [tracks[i] for i in matches[:, 0]]
            indices = detections[matches[:, 1]]
            mean, covariance = self.kalman.update(np.stack([t.mean for t in matched]),
                                                  np.stack([t.covariance for t in matched]),
                                                  xyxy_to_cxcyah(boxes[indices]))
            for track, index, m, c in zip(matched, indices, mean, covariance):
                track.mean, track.covariance = m, c
                track.label, track.score = int(labels[index]), float(scores[index])
                track.last_frame, track.detection_index = self.frame, int(index)
                track.hits += 1
                track.state = TrackState.TRACKED
                if track.track_id is None:
                    self._confirm(track)
        return [tracks[i] for i in unmatched_tracks], detections[unmatched_detections]

    def _confirm(self, track: Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1

    def _start_tracks(self, detections: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                      labels: np.ndarray) -> None:
        """A NEW track per detection (TRACKED and confirmed on the first frame)."""
        if len(detections) == 0:
            return
        mean, covariance = self.kalman.initiate(xyxy_to_cxcyah(boxes[detections]))
        for index, m, c in zip(detections, mean, covariance):
            track = Track(mean=m, covariance=c, label=int(labels[index]), score=float(scores[index]),
                          start_frame=self.frame, last_frame=self.frame, detection_index=int(index))
            if self.frame == 1:
                track.state = TrackState.TRACKED
                self._confirm(track)
            self.tracks.append(track)

    def _remove_duplicates(self) -> None:
        """Of a tracked and a lost track on one object (IoU > 0.85; of one class with
        ``per_class``), remove the younger."""
        tracked = [t for t in self.tracks if t.state is TrackState.TRACKED]
        lost = [t for t in self.tracks if t.state is TrackState.LOST]
        if not tracked or not lost:
            return
        iou = box_iou_numpy(np.stack([t.box for t in tracked]), np.stack([t.box for t in lost]))
        for i, j in zip(*np.nonzero(iou > _DUPLICATE_IOU)):
            a, b = tracked[i], lost[j]
            if self.per_class and a.label != b.label:
                continue
            age_a, age_b = self.frame - a.start_frame, self.frame - b.start_frame
            (b if age_a > age_b else a).state = TrackState.REMOVED
