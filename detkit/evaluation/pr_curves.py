"""Precision-recall curves as PNG images, drawn with OpenCV (matplotlib is not a dependency).

:func:`draw_pr_curves` renders any number of named curves on one line chart of
:mod:`detkit.evaluation.charts` (axes, grid, tick labels, one colour per curve, a legend with the
AP of each, as a fraction in [0, 1]); :func:`save_pr_curves` writes one chart per
class plus an overview of all classes. Curves come from :class:`~detkit.evaluation.voc_eval.ClassPR`
(raw cumulative precision and recall) or :func:`~detkit.evaluation.coco_eval.coco_pr_curves`
(pycocotools' interpolated precision at 101 recall thresholds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .charts import PALETTE, Series, draw_line_chart, lighter, write_png

__all__ = ["PALETTE", "draw_pr_curves", "save_pr_curves"]


def _monotone(precision: np.ndarray) -> np.ndarray:
    """The precision envelope: each value raised to the best precision at any larger recall."""
    return np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision


def draw_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "Precision-recall",
    ap: Mapping[str, float] | None = None,
    size: tuple[int, int] = (640, 480),
    envelope: bool = False,
    max_legend: int = 10,
) -> np.ndarray:
    """Draw precision-recall curves on one chart (a :func:`~detkit.evaluation.charts.draw_line_chart`).

    Args:
        curves: name -> ``(recall [D], precision [D])`` (points in order of decreasing score).
        title: chart title.
        ap: name -> AP in [0, 1] shown in the legend as a fraction (NaN or absent: not shown).
        size: ``(width, height)`` of the image in pixels.
        envelope: also draw each curve's monotone envelope (the interpolation VOC all-point AP
            integrates) as a thin staircase in a lighter shade of the curve's colour.
        max_legend: legend entries shown (colours repeat after 10 curves anyway).

    Returns:
        ``[H, W, 3]`` uint8 BGR image.
    """
    series: list[Series] = []
    for i, (name, (recall, precision)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        value = (ap or {}).get(name, math.nan)
        label = name[:28] if math.isnan(value) else f"{name[:28]} AP {value:.3f}"
        recall = np.nan_to_num(np.asarray(recall, np.float64))
        precision = np.nan_to_num(np.asarray(precision, np.float64))
        if not len(recall):
            series.append(Series(np.zeros(0), np.zeros(0), color, label))
            continue
        if envelope:
            # The interpolated curve VOC all-point AP integrates: a staircase holding, from each
            # recall back to the previous one, the best precision at that recall or above.
            step_r = np.stack([np.r_[0.0, recall[:-1]], recall], axis=1).reshape(-1)
            step_p = np.repeat(_monotone(precision), 2)
            series.append(Series(step_r, step_p, lighter(color), None, 1))
        # Start at recall 0 with the first precision so the curve reaches the axis.
        series.append(Series(np.r_[0.0, recall], np.r_[precision[0], precision], color, label))
    return draw_line_chart(series, title, "recall", "precision", size=size, max_legend=max_legend)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def save_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out_dir: str | Path,
    ap: Mapping[str, float] | None = None,
    title: str = "",
    per_class: bool = True,
) -> list[Path]:
    """Write ``all_classes.png`` (every curve) and one ``pr_<class>.png`` per class.

    Args:
        curves: name -> ``(recall, precision)``.
        out_dir: output folder (created).
        ap: name -> AP for the legends.
        title: prefix of the chart titles (e.g. ``"VOC12 @0.5"``).
        per_class: also write one chart per class (with its monotone envelope).

    Returns:
        The written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    prefix = f"{title}: " if title else ""

    def write(path: Path, img: np.ndarray) -> None:
        written.append(write_png(path, img))

    write(out_dir / "all_classes.png", draw_pr_curves(curves, f"{prefix}all classes", ap))
    if per_class:
        used: set[str] = set()
        for name, curve in curves.items():
            stem = _safe_name(name)
            while stem in used:
                stem += "_"
            used.add(stem)
            write(out_dir / f"pr_{stem}.png",
                  draw_pr_curves({name: curve}, f"{prefix}{name}", ap, envelope=True))
    return written
