"""Multi-object tracking metrics: CLEAR MOT (MOTA, MOTP, identity switches) and IDF1.

Frame by frame (Bernardin and Stiefelhagen, "Evaluating Multiple Object Tracking Performance: The
CLEAR MOT Metrics", 2008), as py-motmetrics computes them:

1. a ground-truth object and a predicted track can be paired when their boxes overlap with
   ``IoU >= iou_thresh`` (0.5);
2. a pair of the object's last match (in any earlier frame) is kept when still allowed, so a
   tracker is not penalised for a momentarily better-placed neighbour;
3. the other objects and tracks are paired by a linear assignment: the most pairs, then the
   least total ``1 - IoU``;
4. a paired object whose last match was another track is an **identity switch**; an unpaired
   object a **false negative**, an unpaired track a **false positive**.

``MOTA = 1 - (FN + FP + IDSW) / GT`` (GT: ground-truth boxes over all frames; it can be negative),
``MOTP`` here is the mean IoU of the pairs (py-motmetrics reports ``1 - IoU``).

IDF1 (Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera
Tracking", 2016) pairs each ground-truth identity with at most one predicted identity for the
whole video, choosing the pairing with the most frames in which the two overlap (``IoU >=
iou_thresh``): those are the ID true positives, and ``IDF1 = 2 IDTP / (GT + predicted boxes)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from detkit.ops import box_iou

__all__ = ["MOTAccumulator", "MOTResult", "evaluate_mot"]

TrackId = Hashable


def _linear_sum_assignment():
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as error:
        raise ImportError("detkit.evaluation.mot_metrics needs scipy for the linear assignment: "
                          "pip install scipy") from error
    return linear_sum_assignment


@dataclass
class MOTResult:
    """The metrics of a tracked video against its ground truth.

    Attributes:
        mota: Multiple object tracking accuracy, ``1 - (FN + FP + IDSW) / GT`` (at most 1).
        motp: Mean IoU of the paired boxes (1: perfectly placed).
        idf1: ``2 IDTP / (GT + predicted)``, in [0, 1].
        num_frames: Frames evaluated.
        num_ground_truth: Ground-truth boxes over all frames (GT).
        num_predictions: Predicted boxes over all frames.
        matches: Pairs over all frames (true positives).
        false_negatives: Ground-truth boxes left unpaired.
        false_positives: Predicted boxes left unpaired.
        id_switches: Pairs whose ground-truth object was last paired with another track.
        id_true_positives: IDTP of IDF1.
        switches_by_object: ``{ground-truth id: identity switches}``, every object present.
        num_predicted_ids: Distinct predicted track ids.
    """

    mota: float
    motp: float
    idf1: float
    num_frames: int
    num_ground_truth: int
    num_predictions: int
    matches: int
    false_negatives: int
    false_positives: int
    id_switches: int
    id_true_positives: int
    switches_by_object: dict[TrackId, int] = field(default_factory=dict)
    num_predicted_ids: int = 0

    @property
    def precision(self) -> float:
        """Paired predicted boxes / predicted boxes."""
        return self.matches / self.num_predictions if self.num_predictions else 0.0

    @property
    def recall(self) -> float:
        """Paired ground-truth boxes / ground-truth boxes."""
        return self.matches / self.num_ground_truth if self.num_ground_truth else 0.0

    def summary(self) -> str:
        """One line: MOTA, IDF1, MOTP, IDSW, FP, FN, GT."""
        return (f"MOTA {self.mota:.3f}  IDF1 {self.idf1:.3f}  MOTP {self.motp:.3f}  "
                f"IDSW {self.id_switches}  FP {self.false_positives}  FN {self.false_negatives}  "
                f"GT {self.num_ground_truth}  frames {self.num_frames}")


def _iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of xyxy pixel boxes (float64)."""
    if len(boxes1) == 0 or len(boxes2) == 0:
        return np.zeros((len(boxes1), len(boxes2)))
    return box_iou(torch.as_tensor(boxes1, dtype=torch.float64),
                   torch.as_tensor(boxes2, dtype=torch.float64)).numpy()


class MOTAccumulator:
    """Collects a video's frames one at a time, then computes :class:`MOTResult`.

    Args:
        iou_thresh: Least IoU of a ground-truth box and a predicted box that can be paired.

    Raises:
        ValueError: ``iou_thresh`` outside (0, 1].
    """

    def __init__(self, iou_thresh: float = 0.5) -> None:
        if not 0.0 < iou_thresh <= 1.0:
            raise ValueError(f"MOTAccumulator: iou_thresh must be in (0, 1], got {iou_thresh}")
        self.iou_thresh = float(iou_thresh)
        self.frames = 0
        self._last_match: dict[TrackId, TrackId] = {}  # ground-truth id -> track id, ever
        self._counts = defaultdict(int)
        self._iou_sum = 0.0
        self._switches: dict[TrackId, int] = defaultdict(int)
        self._overlaps: dict[tuple[TrackId, TrackId], int] = defaultdict(int)  # for IDF1
        self._gt_ids: set[TrackId] = set()
        self._predicted_ids: set[TrackId] = set()

    def update(self, gt_ids: Sequence[TrackId], gt_boxes: np.ndarray, predicted_ids: Sequence[TrackId],
               predicted_boxes: np.ndarray) -> None:
        """Add one frame.

        Args:
            gt_ids: ``N`` ground-truth identities present in the frame (distinct).
            gt_boxes: ``[N, 4]`` xyxy pixels.
            predicted_ids: ``M`` track identities the tracker reported (distinct).
            predicted_boxes: ``[M, 4]`` xyxy pixels.

        Raises:
            ValueError: Ids and boxes of different lengths, or an id twice in a frame.
        """
        gt_ids, predicted_ids = list(gt_ids), list(predicted_ids)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        predicted_boxes = np.asarray(predicted_boxes, dtype=np.float64).reshape(-1, 4)
        for name, ids, boxes in (("gt", gt_ids, gt_boxes), ("predicted", predicted_ids, predicted_boxes)):
            if len(ids) != len(boxes):
                raise ValueError(f"MOTAccumulator.update: {len(ids)} {name}_ids but {len(boxes)} "
                                 f"{name}_boxes (frame {self.frames})")
            if len(set(ids)) != len(ids):
                raise ValueError(f"MOTAccumulator.update: an id twice among the {name}_ids of frame "
                                 f"{self.frames}: {ids}")
        self.frames += 1
        self._gt_ids.update(gt_ids)
        self._predicted_ids.update(predicted_ids)
        for gt_id in gt_ids:
            self._switches[gt_id] += 0  # every object present gets an entry
        iou = _iou(gt_boxes, predicted_boxes)
        allowed = iou >= self.iou_thresh
        for i, j in zip(*np.nonzero(allowed)):
            self._overlaps[(gt_ids[i], predicted_ids[j])] += 1

        pairs: list[tuple[int, int]] = []
        free_gt = np.ones(len(gt_ids), bool)
        free_predicted = np.ones(len(predicted_ids), bool)
        column = {track_id: j for j, track_id in enumerate(predicted_ids)}
        for i, gt_id in enumerate(gt_ids):  # 2. keep the last matches still allowed
            j = column.get(self._last_match.get(gt_id, object()))
            if j is not None and free_predicted[j] and allowed[i, j]:
                pairs.append((i, j))
                free_gt[i] = free_predicted[j] = False
        rows, columns = np.flatnonzero(free_gt), np.flatnonzero(free_predicted)
        if len(rows) and len(columns):  # 3. the most pairs, then the least 1 - IoU
            sub_allowed = allowed[np.ix_(rows, columns)]
            cost = np.where(sub_allowed, 1.0 - iou[np.ix_(rows, columns)], len(rows) + len(columns) + 1.0)
            for r, c in zip(*_linear_sum_assignment()(cost)):
                if sub_allowed[r, c]:
                    pairs.append((int(rows[r]), int(columns[c])))

        for i, j in pairs:  # 4. switches
            gt_id, track_id = gt_ids[i], predicted_ids[j]
            if gt_id in self._last_match and self._last_match[gt_id] != track_id:
                self._counts["switches"] += 1
                self._switches[gt_id] += 1
            self._last_match[gt_id] = track_id
            self._iou_sum += float(iou[i, j])
        self._counts["gt"] += len(gt_ids)
        self._counts["predicted"] += len(predicted_ids)
        self._counts["matches"] += len(pairs)

    def _id_true_positives(self) -> int:
        """IDTP: the one-to-one pairing of identities with the most overlapping frames."""
        if not self._overlaps:
            return 0
        gt_index = {gt_id: i for i, gt_id in enumerate(sorted(self._gt_ids, key=repr))}
        predicted_index = {p: j for j, p in enumerate(sorted(self._predicted_ids, key=repr))}
        overlaps = np.zeros((len(gt_index), len(predicted_index)))
        for (gt_id, track_id), count in self._overlaps.items():
            overlaps[gt_index[gt_id], predicted_index[track_id]] = count
        rows, columns = _linear_sum_assignment()(overlaps, maximize=True)
        return int(overlaps[rows, columns].sum())

    def result(self) -> MOTResult:
        """The metrics of the frames added so far."""
        gt, predicted, matches = self._counts["gt"], self._counts["predicted"], self._counts["matches"]
        switches = self._counts["switches"]
        false_negatives, false_positives = gt - matches, predicted - matches
        idtp = self._id_true_positives()
        return MOTResult(
            mota=1.0 - (false_negatives + false_positives + switches) / gt if gt else float("nan"),
            motp=self._iou_sum / matches if matches else float("nan"),
            idf1=2.0 * idtp / (gt + predicted) if gt + predicted else float("nan"),
            num_frames=self.frames, num_ground_truth=gt, num_predictions=predicted, matches=matches,
            false_negatives=false_negatives, false_positives=false_positives, id_switches=switches,
            id_true_positives=idtp, switches_by_object=dict(self._switches),
            num_predicted_ids=len(self._predicted_ids))


def evaluate_mot(ground_truth: Sequence[tuple[Sequence[TrackId], np.ndarray]],
                 predictions: Sequence[tuple[Sequence[TrackId], np.ndarray]],
                 iou_thresh: float = 0.5) -> MOTResult:
    """The MOT metrics of a whole video.

    Args:
        ground_truth: Per frame, ``(ids [N], boxes [N, 4] xyxy pixels)``.
        predictions: Per frame (as many frames), ``(track ids [M], boxes [M, 4])``.
        iou_thresh: Least IoU of a pair.

    Raises:
        ValueError: Different numbers of frames, or a frame's ids and boxes that disagree.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"evaluate_mot: {len(ground_truth)} ground-truth frames but "
                         f"{len(predictions)} predicted frames")
    accumulator = MOTAccumulator(iou_thresh)
    for (gt_ids, gt_boxes), (predicted_ids, predicted_boxes) in zip(ground_truth, predictions):
        accumulator.update(gt_ids, gt_boxes, predicted_ids, predicted_boxes)
    return accumulator.result()
