"""Precision-recall curves as PNG images, drawn with OpenCV (matplotlib is not a dependency).

:func:`draw_pr_curves` renders any number of named curves on one chart (axes, grid, tick labels,
one colour per curve, a legend with the AP of each); :func:`save_pr_curves` writes one chart per
class plus an overview of all classes. Curves come from :class:`~detkit.evaluation.voc_eval.ClassPR`
(raw cumulative precision and recall) or :func:`~detkit.evaluation.coco_eval.coco_pr_curves`
(pycocotools' interpolated precision at 101 recall thresholds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

__all__ = ["PALETTE", "draw_pr_curves", "save_pr_curves"]

# Tableau-10 colours (the matplotlib default cycle), as BGR for OpenCV.
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16))
    for h in ("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd",
              "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf")
)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


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
    """Draw precision-recall curves on one chart.

    Args:
        curves: name -> ``(recall [D], precision [D])`` (points in order of decreasing score).
        title: chart title.
        ap: name -> AP shown in the legend (NaN or absent: not shown).
        size: ``(width, height)`` of the image in pixels.
        envelope: also draw each curve's monotone envelope (the interpolation VOC all-point AP
            integrates) as a thin staircase in a lighter shade of the curve's colour.
        max_legend: legend entries shown (colours repeat after 10 curves anyway).

    Returns:
        ``[H, W, 3]`` uint8 BGR image.
    """
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 40, 50
    x0, x1, y0, y1 = left, width - right, top, height - bottom

    def to_px(r: np.ndarray, p: np.ndarray) -> np.ndarray:
        x = x0 + np.clip(r, 0, 1) * (x1 - x0)
        y = y1 - np.clip(p, 0, 1) * (y1 - y0)
        return np.stack([x, y], axis=1).round().astype(np.int32)

    # Grid, axes and tick labels at 0, 0.2, ..., 1.
    for t in np.linspace(0, 1, 6):
        gx, gy = to_px(np.array([t]), np.array([t]))[0]
        cv2.line(img, (int(gx), y0), (int(gx), y1), (225, 225, 225), 1)
        cv2.line(img, (x0, int(gy)), (x1, int(gy)), (225, 225, 225), 1)
        cv2.putText(img, f"{t:.1f}", (int(gx) - 10, y1 + 18), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (x0 - 32, int(gy) + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, "recall", ((x0 + x1) // 2 - 20, height - 12), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "precision", (4, top - 8), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (x0 + 80, 24), _FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)

    for i, (name, (recall, precision)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        recall = np.nan_to_num(np.asarray(recall, np.float64))
        precision = np.nan_to_num(np.asarray(precision, np.float64))
        if not len(recall):
            continue
        if envelope:
            # The interpolated curve VOC all-point AP integrates: a staircase holding, from each
            # recall back to the previous one, the best precision at that recall or above.
            step_r = np.stack([np.r_[0.0, recall[:-1]], recall], axis=1).reshape(-1)
            step_p = np.repeat(_monotone(precision), 2)
            light = tuple(int(c + (255 - c) * 0.45) for c in color)
            cv2.polylines(img, [to_px(step_r, step_p).reshape(-1, 1, 2)], False, light, 1, cv2.LINE_AA)
        # Start at recall 0 with the first precision so the curve reaches the axis.
        pts = to_px(np.r_[0.0, recall], np.r_[precision[0], precision])
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA)

    # Legend on a white box, top right inside the plot; the first entries only when there are many.
    labels = []
    for name in list(curves)[:max_legend]:
        value = (ap or {}).get(name, math.nan)
        labels.append(name[:28] if math.isnan(value) else f"{name[:28]} AP {100 * value:.1f}")
    if len(curves) > max_legend:
        labels.append(f"... {len(curves) - max_legend} more")
    if labels:
        text_w = max(cv2.getTextSize(t, _FONT, 0.4, 1)[0][0] for t in labels)
        bx1, by0 = x1 - 6, y0 + 6
        bx0, by1 = bx1 - text_w - 36, by0 + 16 * len(labels) + 6
        cv2.rectangle(img, (bx0, by0), (bx1, by1), (255, 255, 255), -1)
        cv2.rectangle(img, (bx0, by0), (bx1, by1), (160, 160, 160), 1)
        for i, text in enumerate(labels):
            ty = by0 + 16 * (i + 1)
            if i < min(len(curves), max_legend):
                cv2.line(img, (bx0 + 6, ty - 4), (bx0 + 24, ty - 4), PALETTE[i % len(PALETTE)], 3)
            cv2.putText(img, text, (bx0 + 30, ty), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


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
        if not cv2.imwrite(str(path), img):
            raise OSError(f"could not write {path}")
        written.append(path)

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
