"""The per-class table of an analysis: the evaluator's APs beside the best-F1 operating point.

One row per class, then ``all classes``: the number of positives and of counted detections, the
AP columns the evaluator gives (COCO: ``AP`` over IoU 0.50:0.95, ``AP50``, ``AP75``; VOC: the
07 11-point and 12 all-point AP at its IoU), and the best-F1 score threshold with the precision,
recall and F1 there. Every AP, precision, recall and F1 is a fraction in [0, 1], in the text table
as in the json (never a percentage); the thresholds are in the units of the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .score_curves import ALL_CLASSES, BestF1, ScoreCurve

__all__ = ["UNITS", "ClassRow", "class_table", "class_table_json", "format_class_table"]

UNITS = "AP, precision, recall and F1 are fractions in [0, 1]; score_thresh is in the units of the scores"


@dataclass
class ClassRow:
    """One row of the table.

    Attributes:
        name: class name, or ``all classes``.
        num_gt: positives (crowd and difficult ground truths excluded).
        num_det: counted detections at every score.
        ap: column name -> AP in [0, 1] (NaN: undefined, no ground truth).
        best: the best-F1 operating point (``None``: no positives or no detections).
    """

    name: str
    num_gt: int
    num_det: int
    ap: dict[str, float] = field(default_factory=dict)
    best: BestF1 | None = None


def class_table(
    curves: Mapping[str, ScoreCurve],
    ap_columns: Mapping[str, Sequence[float]] | None = None,
    mean_ap: Mapping[str, float] | None = None,
) -> list[ClassRow]:
    """The rows: one per class in the order of ``curves``, then the pooled ``all classes``.

    Args:
        curves: from :func:`~detkit.evaluation.score_curves.score_curves`.
        ap_columns: column name -> one AP per class (in class order), in [0, 1].
        mean_ap: column name -> the value of the ``all classes`` row (the evaluator's mean);
            default the mean over classes of the defined values.
    """
    ap_columns = dict(ap_columns or {})
    classes = [c for c in curves.values() if c.name != ALL_CLASSES]
    for column, values in ap_columns.items():
        if len(values) != len(classes):
            raise ValueError(f"AP column {column!r} has {len(values)} values for {len(classes)} classes")
    rows = [ClassRow(c.name, c.num_gt, len(c.scores), {n: float(v[k]) for n, v in ap_columns.items()}, c.best_f1())
            for k, c in enumerate(classes)]
    if ALL_CLASSES in curves:
        pooled = curves[ALL_CLASSES]
        means = {}
        for column, values in ap_columns.items():
            defined = [float(v) for v in values if not math.isnan(v)]
            means[column] = (mean_ap or {}).get(column, sum(defined) / len(defined) if defined else math.nan)
        rows.append(ClassRow(ALL_CLASSES, pooled.num_gt, len(pooled.scores), means, pooled.best_f1()))
    return rows


def _fraction(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def format_class_table(rows: Sequence[ClassRow], title: str = "") -> str:
    """The rows as a text table, with the units in its header.

    ``-`` marks an undefined value (an AP without ground truth, a best F1 without detections).
    """
    if not rows:
        return ""
    ap_names = list(rows[0].ap)
    headers = ["class", "#gt", "#det", *ap_names, "best-F1 thr", "P", "R", "F1"]
    body = []
    for row in rows:
        b = row.best
        body.append([row.name, str(row.num_gt), str(row.num_det), *(_fraction(row.ap.get(n)) for n in ap_names),
                     "-" if b is None else f"{b.score_thresh:.3f}", _fraction(b and b.precision),
                     _fraction(b and b.recall), _fraction(b and b.f1)])
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(headers))
    lines = [f"{title + ' ' if title else ''}({UNITS})", line(headers), rule]
    lines += [line(r) for r in body[:-1]]
    if rows[-1].name == ALL_CLASSES:
        lines.append(rule)
    lines.append(line(body[-1]))
    return "\n".join(lines)


def class_table_json(rows: Sequence[ClassRow], **settings: Any) -> dict[str, Any]:
    """The rows json-ready (NaN as null), with the units and the given settings (IoU...)."""

    def value(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else float(v)

    return {
        "units": UNITS,
        **settings,
        "classes": [{"name": r.name, "num_gt": r.num_gt, "num_det": r.num_det,
                     "ap": {n: value(v) for n, v in r.ap.items()},
                     "best_f1": r.best.to_json() if r.best else None} for r in rows],
    }
