"""Precision, recall and F1 against the score threshold, and the threshold of the best F1.

From the same-class matching of :func:`~detkit.evaluation.matching.match_results` (pycocotools'
rules at one IoU): keeping the detections with ``score >= t``,

* ``precision(t) = TP(t) / D(t)`` (``D``: the detections kept, those matched to an ignored ground
  truth not counted; NaN where none is kept),
* ``recall(t) = TP(t) / G`` (``G``: the positives; NaN for a class without any),
* ``F1(t) = 2 P R / (P + R) = 2 TP / (D + G)`` (0 where ``TP`` is 0, NaN where ``G`` is 0).

"all classes" pools the counts of every class (TP, D and G summed: a micro average). The best
F1 of a curve is searched at every distinct detection score (the thresholds where a count
changes); on a tie the highest threshold wins (the fewest detections). Every value is a fraction
in [0, 1]; thresholds are in the units of the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .charts import PALETTE, Series, draw_line_chart, write_png
from .matching import DetectionMatches

__all__ = ["ALL_CLASSES", "BestF1", "ScoreCurve", "curves_to_json", "draw_score_curves", "save_score_curves",
           "score_curves", "threshold_grid"]

ALL_CLASSES = "all classes"
"""The name of the pooled curve."""


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class BestF1:
    """The operating point of the best F1 of a curve.

    Attributes:
        score_thresh: keep detections with ``score >= score_thresh``.
        precision: in [0, 1].
        recall: in [0, 1].
        f1: in [0, 1].
        tp: true positives kept.
        num_det: detections kept.
    """

    score_thresh: float
    precision: float
    recall: float
    f1: float
    tp: int
    num_det: int

    def to_json(self) -> dict[str, Any]:
        """A json-ready dict."""
        return {"score_thresh": self.score_thresh, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "tp": self.tp, "num_det": self.num_det}


@dataclass
class ScoreCurve:
    """The ranked detections of one class (or of all, pooled) and their true-positive flags.

    Attributes:
        name: the class name, or :data:`ALL_CLASSES`.
        num_gt: positives ``G``.
        scores: ``[D]`` scores of the counted detections, decreasing.
        tp: ``[D]`` bool, true positive flags in that order.
    """

    name: str
    num_gt: int
    scores: np.ndarray
    tp: np.ndarray

    def counts(self, thresh: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``(TP, D)`` keeping ``score >= thresh``, for each threshold (same shape as ``thresh``)."""
        kept = np.searchsorted(-self.scores, -np.asarray(thresh, np.float64), side="right")
        cum_tp = np.r_[0, np.cumsum(self.tp, dtype=np.int64)]
        return cum_tp[kept], kept

    def at(self, thresh: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(precision, recall, f1)`` keeping ``score >= thresh`` (see the module for NaN)."""
        tp, kept = self.counts(thresh)
        tp, kept = tp.astype(np.float64), kept.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(kept > 0, tp / kept, np.nan)
            recall = tp / self.num_gt if self.num_gt else np.full_like(tp, np.nan)
            f1 = 2 * tp / (kept + self.num_gt) if self.num_gt else np.full_like(tp, np.nan)
        return precision, recall, f1

    def best_f1(self) -> BestF1 | None:
        """The best F1 over the detection scores; ``None`` without positives or detections."""
        if not self.num_gt or not len(self.scores):
            return None
        last = np.r_[self.scores[1:] != self.scores[:-1], True]  # the last detection of each score
        cum_tp = np.cumsum(self.tp, dtype=np.int64)[last]
        kept = np.flatnonzero(last) + 1
        f1 = 2 * cum_tp / (kept + self.num_gt)
        i = int(np.argmax(f1))  # the first maximum: the highest threshold
        tp, n = int(cum_tp[i]), int(kept[i])
        return BestF1(float(self.scores[last][i]), tp / n, tp / self.num_gt, float(f1[i]), tp, n)


def score_curves(matches: DetectionMatches) -> dict[str, ScoreCurve]:
    """One :class:`ScoreCurve` per class (in class order), then the pooled :data:`ALL_CLASSES`.

    Args:
        matches: the same-class matching of a dataset.

    Returns:
        name -> curve (a class named like :data:`ALL_CLASSES`, or like an earlier class, gets its
        index appended to its name).
    """
    counted = ~matches.det_ignored
    num_gt = matches.num_gt
    curves: dict[str, ScoreCurve] = {}

    def ranked(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-matches.det_score[mask], kind="stable")
        return matches.det_score[mask][order], matches.det_tp[mask][order]

    for k, name in enumerate(matches.class_names):
        key = name if name != ALL_CLASSES and name not in curves else f"{name} ({k})"
        curves[key] = ScoreCurve(key, int(num_gt[k]), *ranked(counted & (matches.det_class == k)))
    curves[ALL_CLASSES] = ScoreCurve(ALL_CLASSES, int(num_gt.sum()), *ranked(counted))
    return curves


def threshold_grid(curves: Mapping[str, ScoreCurve], points: int = 101) -> np.ndarray:
    """``points`` thresholds evenly over [0, 1], or over the scores' range when they leave [0, 1]."""
    scores = np.concatenate([c.scores for c in curves.values()] + [np.zeros(0)])
    low, high = 0.0, 1.0
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        low, high = min(0.0, float(scores.min())), max(1.0, float(scores.max()))
    return np.linspace(low, high, points)


_QUANTITIES = ("precision", "recall", "f1")


def draw_score_curves(curves: Mapping[str, ScoreCurve], quantity: str, title: str = "",
                      grid: np.ndarray | None = None) -> np.ndarray:
    """One quantity (``"precision"``, ``"recall"`` or ``"f1"``) against the score threshold.

    Every class is a thin line (with its best F1 and its threshold in the legend), the pooled
    curve a thick black one, first in the legend.

    Returns:
        ``[H, W, 3]`` uint8 BGR image.
    """
    if quantity not in _QUANTITIES:
        raise ValueError(f"quantity must be one of {_QUANTITIES}, got {quantity!r}")
    grid = threshold_grid(curves) if grid is None else grid
    index = _QUANTITIES.index(quantity)
    names = [n for n in curves if n == ALL_CLASSES] + [n for n in curves if n != ALL_CLASSES]
    series = []
    for i, name in enumerate(names):
        curve = curves[name]
        best = curve.best_f1()
        label = name[:24] if best is None else f"{name[:24]} F1 {best.f1:.2f} @{best.score_thresh:.2f}"
        pooled = name == ALL_CLASSES
        color = (0, 0, 0) if pooled else PALETTE[(i - 1) % len(PALETTE)]
        series.append(Series(grid, curve.at(grid)[index], color, label, 3 if pooled else 1))
    return draw_line_chart(series, title or f"{quantity} vs score threshold", "score threshold",
                           {"f1": "F1"}.get(quantity, quantity), x_range=(float(grid[0]), float(grid[-1])))


def save_score_curves(curves: Mapping[str, ScoreCurve], out_dir: str | Path, title: str = "") -> list[Path]:
    """Write ``precision_vs_score.png``, ``recall_vs_score.png`` and ``f1_vs_score.png``."""
    grid = threshold_grid(curves)
    prefix = f"{title}: " if title else ""
    return [write_png(Path(out_dir) / f"{q}_vs_score.png",
                      draw_score_curves(curves, q, f"{prefix}{'F1' if q == 'f1' else q} vs score", grid))
            for q in _QUANTITIES]


def curves_to_json(curves: Mapping[str, ScoreCurve], grid: Sequence[float] | None = None) -> dict[str, Any]:
    """The curves sampled on ``grid`` (default :func:`threshold_grid`) and each best F1, json-ready."""
    grid = threshold_grid(curves) if grid is None else np.asarray(grid, np.float64)
    out: dict[str, Any] = {
        "definition": "keep detections with score >= threshold; precision = TP / kept, recall = TP / positives, "
                      "F1 = 2 TP / (kept + positives); 'all classes' pools the counts of every class",
        "units": "precision, recall and F1 are fractions in [0, 1] (null: undefined); thresholds are scores",
        "thresholds": [float(t) for t in grid],
        "classes": {},
    }
    for name, curve in curves.items():
        precision, recall, f1 = curve.at(grid)
        best = curve.best_f1()
        out["classes"][name] = {
            "num_gt": curve.num_gt, "num_det": len(curve.scores),
            "best_f1": best.to_json() if best else None,
            "precision": [_nan_to_none(v) for v in precision],
            "recall": [_nan_to_none(v) for v in recall],
            "f1": [_nan_to_none(v) for v in f1],
        }
    return out
