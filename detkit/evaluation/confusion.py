"""The detection confusion matrix, with a background row and column.

Rows are the ground truth, columns the prediction, both over the ``K`` classes then
``background`` (index ``K``). At one IoU threshold and one score threshold (detections with
``score >= score_thresh``), per image:

1. the same-class matching of :func:`~detkit.evaluation.matching.match_results` (pycocotools'
   rules: greedy by score, each detection takes the untaken ground truth of its class with the
   highest IoU ``>= iou_thresh``, one ground truth per detection, crowd and difficult ground truths
   ignored): a match is a true positive, cell ``[c, c]``; a detection matched to an ignored ground
   truth is not counted anywhere;
2. the detections still unmatched, by decreasing score, each take the untaken (not ignored)
   ground truth *of another class* with the highest IoU ``>= iou_thresh``: a confusion, cell
   ``[true class, predicted class]``;
3. detections still unmatched are false positives on background, row ``background``
   (``[K, predicted class]``); ground truths still untaken are missed, column ``background``
   (``[true class, K]``). The cell ``[K, K]`` is always 0.

So row ``c`` sums to the positives of class ``c``, and column ``c`` to the counted detections of
class ``c`` kept at the threshold; the diagonal is the true positives that precision and recall
at that threshold use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .charts import draw_matrix, write_png
from .matching import DetectionMatches

__all__ = ["BACKGROUND", "ConfusionMatrix", "confusion_matrix"]

BACKGROUND = "background"


@dataclass
class ConfusionMatrix:
    """Counts of ground truth (rows) against prediction (columns), background last in both.

    Attributes:
        class_names: the ``K`` class names (background excluded).
        matrix: ``[K + 1, K + 1]`` int64 counts (see the module docstring).
        iou_thresh: the IoU a match needed.
        score_thresh: detections with ``score >= score_thresh`` counted (``inf``: none).
        score_thresh_source: how the score threshold was chosen (e.g. ``"given"``).
    """

    class_names: list[str]
    matrix: np.ndarray
    iou_thresh: float
    score_thresh: float
    score_thresh_source: str = "given"

    @property
    def names(self) -> list[str]:
        """Row and column names: the classes, then ``background``."""
        return [*self.class_names, BACKGROUND]

    def row_normalized(self) -> np.ndarray:
        """``[K + 1, K + 1]`` each row divided by its sum (the share of each class's ground truths;
        NaN for a row without any, the background row's share of the false positives)."""
        sums = self.matrix.sum(axis=1, keepdims=True).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sums > 0, self.matrix / sums, np.nan)

    def to_json(self) -> dict[str, Any]:
        """A json-ready dict: names, counts, thresholds, and the layout in words."""
        finite = bool(np.isfinite(self.score_thresh))
        return {
            "layout": "rows: ground truth, columns: prediction; last row and column: background "
                      "(row background: false positives, column background: missed ground truths)",
            "names": self.names,
            "matrix": self.matrix.astype(int).tolist(),
            "iou_thresh": self.iou_thresh,
            "score_thresh": float(self.score_thresh) if finite else None,
            "score_thresh_source": self.score_thresh_source,
            "units": "counts of boxes",
        }

    def draw(self, title: str | None = None) -> np.ndarray:
        """The matrix as a heat map: counts in the cells, colour by the row's share.

        Returns:
            ``[H, W, 3]`` uint8 BGR image.
        """
        thresh = f"score >= {self.score_thresh:.3g}" if np.isfinite(self.score_thresh) else "no detections"
        title = title or f"confusion matrix, IoU >= {self.iou_thresh:g}, {thresh} ({self.score_thresh_source})"
        shade = self.row_normalized()
        shade[-1] = self.matrix[-1] / max(int(self.matrix[-1].max()), 1)  # false positives: by their peak
        return draw_matrix(self.matrix, self.names, self.names, title, "ground truth", "prediction", shade)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``confusion_matrix.png`` and ``confusion_matrix.json`` into ``out_dir``."""
        out = Path(out_dir)
        png = write_png(out / "confusion_matrix.png", self.draw())
        path = out / "confusion_matrix.json"
        path.write_text(json.dumps(self.to_json(), indent=1))
        return [png, path]


def confusion_matrix(matches: DetectionMatches, score_thresh: float, source: str = "given") -> ConfusionMatrix:
    """The confusion matrix of matched detections at one score threshold (see the module).

    Args:
        matches: from :func:`~detkit.evaluation.matching.match_results` (its IoU threshold is
            the matrix's).
        score_thresh: count detections with ``score >= score_thresh``.
        source: how the threshold was chosen, recorded in the matrix.

    Returns:
        The matrix.
    """
    k = matches.num_classes
    matrix = np.zeros((k + 1, k + 1), np.int64)
    kept = matches.det_score >= score_thresh
    tp = matches.det_tp & kept
    np.add.at(matrix, (matches.det_class[tp], matches.det_class[tp]), 1)
    taken = np.zeros(len(matches.gt_class), bool)
    taken[matches.det_gt[tp]] = True
    unmatched = kept & (matches.det_gt < 0)
    for image in matches.images:
        dets = image.dets[unmatched[image.dets]]
        if not len(dets):
            continue
        dets = dets[np.argsort(-matches.det_score[dets], kind="stable")]
        local = {int(d): i for i, d in enumerate(image.dets)}
        for d in dets:
            cls = matches.det_class[d]
            iou = image.iou[local[int(d)]]
            free = (~taken[image.gts] & ~matches.gt_ignored[image.gts] & (matches.gt_class[image.gts] != cls)
                    & (iou >= matches.iou_thresh))
            if free.any():
                g = int(np.flatnonzero(free)[np.argmax(iou[free])])
                taken[image.gts[g]] = True
                matrix[matches.gt_class[image.gts[g]], cls] += 1
            else:
                matrix[k, cls] += 1
    missed = ~taken & ~matches.gt_ignored
    np.add.at(matrix, (matches.gt_class[missed], np.full(int(missed.sum()), k)), 1)
    return ConfusionMatrix(list(matches.class_names), matrix, matches.iou_thresh, float(score_thresh), source)

