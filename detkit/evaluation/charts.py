"""Charts drawn with OpenCV (matplotlib is not a dependency): line, bar charts and annotated matrices.

:func:`draw_line_chart` renders any number of :class:`Series` on one chart (axes, grid, tick
labels, a legend); :func:`draw_bar_chart` counts per category (or per histogram bin) as bars,
side by side when there are several series; :func:`draw_matrix` a matrix of counts as a heat map
with the value in every cell. All return a BGR ``uint8`` image; :func:`write_png` writes one and refuses to fail silently.
The precision-recall charts (:mod:`detkit.evaluation.pr_curves`) and the score-threshold charts of
the analysis (:mod:`detkit.evaluation.score_curves`) are line charts of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["PALETTE", "Series", "draw_bar_chart", "draw_line_chart", "draw_matrix", "lighter", "nice_ticks",
           "write_png"]

# Tableau-10 colours (the matplotlib default cycle), as BGR for OpenCV.
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16))
    for h in ("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd",
              "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf")
)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK = (0, 0, 0)


def lighter(color: tuple[int, int, int], amount: float = 0.45) -> tuple[int, int, int]:
    """``color`` moved ``amount`` of the way to white."""
    return tuple(int(c + (255 - c) * amount) for c in color)  # type: ignore[return-value]


@dataclass
class Series:
    """One line of a :func:`draw_line_chart`.

    Attributes:
        x: ``[N]`` x values, in drawing order.
        y: ``[N]`` y values; a non-finite point breaks the line (nothing is drawn there).
        color: BGR colour.
        label: legend text; ``None`` keeps the series out of the legend.
        thickness: line width in pixels.
    """

    x: np.ndarray
    y: np.ndarray
    color: tuple[int, int, int]
    label: str | None = None
    thickness: int = 2


def _tick_text(value: float, span: float) -> str:
    # Six ticks over a span of 0.5 to 1 (precision, recall, F1) read well with one decimal.
    return f"{value:.1f}" if 0.5 <= span <= 1.0 + 1e-9 else f"{value:.3g}"


def draw_line_chart(
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    size: tuple[int, int] = (640, 480),
    max_legend: int = 10,
) -> np.ndarray:
    """Draw line series on one chart with a grid, tick labels at six values per axis and a legend.

    Args:
        series: the lines, drawn in order (later ones on top). Points outside the ranges are
            clipped to the border.
        title: chart title.
        x_label: x axis label (under the axis).
        y_label: y axis label (above the axis).
        x_range: ``(low, high)`` of the x axis.
        y_range: ``(low, high)`` of the y axis.
        size: ``(width, height)`` of the image in pixels.
        max_legend: legend entries shown; more become one "... N more" line.

    Returns:
        ``[H, W, 3]`` uint8 BGR image.
    """
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 40, 50
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    (xlo, xhi), (ylo, yhi) = x_range, y_range
    xspan, yspan = (xhi - xlo) or 1.0, (yhi - ylo) or 1.0

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = x0 + np.clip((x - xlo) / xspan, 0, 1) * (x1 - x0)
        py = y1 - np.clip((y - ylo) / yspan, 0, 1) * (y1 - y0)
        return np.stack([px, py], axis=1).round().astype(np.int32)

    # Grid, axes and tick labels at six evenly spaced values.
    for t in np.linspace(0, 1, 6):
        gx, gy = to_px(np.array([xlo + t * xspan]), np.array([ylo + t * yspan]))[0]
        cv2.line(img, (int(gx), y0), (int(gx), y1), (225, 225, 225), 1)
        cv2.line(img, (x0, int(gy)), (x1, int(gy)), (225, 225, 225), 1)
        cv2.putText(img, _tick_text(xlo + t * xspan, xspan), (int(gx) - 10, y1 + 18), _FONT, 0.4, _BLACK, 1,
                    cv2.LINE_AA)
        cv2.putText(img, _tick_text(ylo + t * yspan, yspan), (x0 - 32, int(gy) + 4), _FONT, 0.4, _BLACK, 1,
                    cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), _BLACK, 1)
    cv2.putText(img, x_label, ((x0 + x1) // 2 - 4 * len(x_label), height - 12), _FONT, 0.5, _BLACK, 1,
                cv2.LINE_AA)
    cv2.putText(img, y_label, (4, top - 8), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, title, (x0 + 80, 24), _FONT, 0.55, _BLACK, 1, cv2.LINE_AA)

    for s in series:
        x = np.asarray(s.x, np.float64).reshape(-1)
        y = np.asarray(s.y, np.float64).reshape(-1)
        finite = np.isfinite(x) & np.isfinite(y)
        # One polyline per run of finite points.
        breaks = np.flatnonzero(np.diff(np.r_[0, finite.astype(np.int8), 0]))
        for start, stop in zip(breaks[::2], breaks[1::2]):
            pts = to_px(x[start:stop], y[start:stop])
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, s.color, s.thickness, cv2.LINE_AA)

    # Legend on a white box, top right inside the plot; the first entries only when there are many.
    entries = [(s.label, s.color) for s in series if s.label is not None]
    labels = [text for text, _ in entries[:max_legend]]
    if len(entries) > max_legend:
        labels.append(f"... {len(entries) - max_legend} more")
    if labels:
        text_w = max(cv2.getTextSize(t, _FONT, 0.4, 1)[0][0] for t in labels)
        bx1, by0 = x1 - 6, y0 + 6
        bx0, by1 = bx1 - text_w - 36, by0 + 16 * len(labels) + 6
        cv2.rectangle(img, (bx0, by0), (bx1, by1), (255, 255, 255), -1)
        cv2.rectangle(img, (bx0, by0), (bx1, by1), (160, 160, 160), 1)
        for i, text in enumerate(labels):
            ty = by0 + 16 * (i + 1)
            if i < min(len(entries), max_legend):
                cv2.line(img, (bx0 + 6, ty - 4), (bx0 + 24, ty - 4), entries[i][1], 3)
            cv2.putText(img, text, (bx0 + 30, ty), _FONT, 0.4, _BLACK, 1, cv2.LINE_AA)
    return img


def draw_matrix(
    values: np.ndarray,
    row_names: Sequence[str],
    col_names: Sequence[str],
    title: str,
    row_label: str,
    col_label: str,
    shade: np.ndarray | None = None,
    cell: int | None = None,
) -> np.ndarray:
    """A matrix of numbers as a heat map, each cell showing its value.

    Args:
        values: ``[R, C]`` numbers printed in the cells (integers without decimals; zeros and NaN
            left blank).
        row_names: ``R`` names, down the left side.
        col_names: ``C`` names, along the bottom (written upwards).
        title: chart title.
        row_label: what the rows are (e.g. ``"ground truth"``).
        col_label: what the columns are (e.g. ``"prediction"``).
        shade: ``[R, C]`` in [0, 1], the colour of each cell (white 0 to dark blue 1; NaN grey);
            default ``values`` over its maximum.
        cell: cell size in pixels; default from the number of rows and columns.

    Returns:
        ``[H, W, 3]`` uint8 BGR image.
    """
    values = np.asarray(values, np.float64)
    rows, cols = values.shape
    if shade is None:
        peak = np.nanmax(values) if values.size and np.isfinite(values).any() else 0.0
        shade = values / peak if peak > 0 else np.zeros_like(values)
    shade = np.asarray(shade, np.float64)
    cell = cell or int(np.clip(640 // max(rows, cols, 1), 14, 56))
    scale = float(np.clip(cell / 90, 0.28, 0.5))
    name_w = max([cv2.getTextSize(n[:24], _FONT, 0.4, 1)[0][0] for n in [*row_names, *col_names]] + [20])
    left, top = name_w + 34, 44
    width, height = left + cols * cell + 20, top + rows * cell + name_w + 34
    width = max(width, cv2.getTextSize(title, _FONT, 0.5, 1)[0][0] + 16)  # room for the title
    img = np.full((height, width, 3), 255, np.uint8)
    dark = np.array(PALETTE[0], np.float64)  # blue
    for r in range(rows):
        for c in range(cols):
            s = shade[r, c]
            color = (200, 200, 200) if not np.isfinite(s) else tuple(
                int(v) for v in 255 + (dark - 255) * float(np.clip(s, 0, 1)))
            p0 = (left + c * cell, top + r * cell)
            cv2.rectangle(img, p0, (p0[0] + cell, p0[1] + cell), color, -1)
            v = values[r, c]
            if np.isfinite(v) and v != 0:  # an empty cell is white: zeros are not written
                text = f"{int(v)}" if float(v).is_integer() else f"{v:.2f}"
                (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
                ink = (255, 255, 255) if np.isfinite(s) and s > 0.5 else _BLACK
                cv2.putText(img, text, (p0[0] + (cell - tw) // 2, p0[1] + (cell + th) // 2), _FONT, scale, ink,
                            1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + cols * cell, top + rows * cell), (160, 160, 160), 1)
    for r, name in enumerate(row_names):
        tw = cv2.getTextSize(name[:24], _FONT, 0.4, 1)[0][0]
        cv2.putText(img, name[:24], (left - tw - 6, top + r * cell + cell // 2 + 4), _FONT, 0.4, _BLACK, 1,
                    cv2.LINE_AA)
    # Column names written upwards: draw on a strip, rotate it, paste it under the matrix.
    strip = np.full((cell * cols, name_w + 8, 3), 255, np.uint8)
    for c, name in enumerate(col_names):
        tw = cv2.getTextSize(name[:24], _FONT, 0.4, 1)[0][0]  # right-aligned: names end at the matrix
        cv2.putText(strip, name[:24], (name_w + 4 - tw, c * cell + cell // 2 + 4), _FONT, 0.4, _BLACK, 1,
                    cv2.LINE_AA)
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y_strip = top + rows * cell + 4
    img[y_strip:y_strip + strip.shape[0], left:left + strip.shape[1]] = strip
    cv2.putText(img, col_label, (left, height - 8), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    rotated = np.full((22, max(cv2.getTextSize(row_label, _FONT, 0.45, 1)[0][0] + 8, 1), 3), 255, np.uint8)
    cv2.putText(rotated, row_label, (4, 16), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    rotated = cv2.rotate(rotated, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y_label = min(top, max(0, img.shape[0] - rotated.shape[0]))
    h_label = min(rotated.shape[0], img.shape[0] - y_label)
    img[y_label:y_label + h_label, 2:2 + rotated.shape[1]] = rotated[:h_label]
    cv2.putText(img, title, (8, 26), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
    return img


def nice_ticks(high: float, count: int = 5, integer: bool = False) -> np.ndarray:
    """Tick values ``0, step, 2 * step, ...`` up to at least ``high``, ``step`` 1, 2 or 5 times a
    power of ten, about ``count`` of them (``[0, 1]`` for ``high <= 0``); ``integer``: a step of
    at least 1 (counts have no half ticks)."""
    if not np.isfinite(high) or high <= 0:
        return np.array([0.0, 1.0])
    raw = high / max(count, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1.0) if integer else step
    return np.arange(0, np.ceil(high / step - 1e-9) + 1) * step


def _upward_text(names: Sequence[str], pitch: int, scale: float) -> np.ndarray:
    """Names written upwards (read bottom to top), one per ``pitch`` pixels from the left, ending
    at the top edge: a ``[max text width + 6, len(names) * pitch, 3]`` white image."""
    text_w = max([cv2.getTextSize(n, _FONT, scale, 1)[0][0] for n in names] + [1])
    strip = np.full((pitch * len(names), text_w + 6, 3), 255, np.uint8)
    for i, name in enumerate(names):
        tw, th = cv2.getTextSize(name, _FONT, scale, 1)[0]
        # right-aligned before rotating: the names end just under the axis
        cv2.putText(strip, name, (text_w + 2 - tw, i * pitch + (pitch + th) // 2), _FONT, scale, _BLACK, 1,
                    cv2.LINE_AA)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def draw_bar_chart(
    values: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
    categories: Sequence[str],
    title: str,
    x_label: str,
    y_label: str,
    series_labels: Sequence[str] | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
    size: tuple[int, int] = (640, 480),
    show_values: bool = True,
    label_zeros: bool = True,
    max_name_chars: int = 24,
) -> np.ndarray:
    """Bars of counts per category (a histogram: one category per bin), with axes, ticks and values.

    The y axis starts at 0 and ends at a round number; each bar carries its value above it when
    the value fits the bar's width. Category names are written under their bars, upwards when
    they do not fit side by side; the chart grows wider than ``size`` when there are too many
    categories for bars at least 6 pixels wide.

    Args:
        values: ``[K]`` one value per category, or ``[S, K]`` S series drawn side by side.
        categories: ``K`` names (cut to ``max_name_chars``).
        title: chart title.
        x_label: what the categories are (under the axis), with units.
        y_label: what the bars count (above the axis), with units.
        series_labels: ``S`` legend entries (no legend when ``None``).
        colors: ``S`` BGR colours (default :data:`PALETTE` in order).
        size: ``(width, height)`` in pixels, the smallest the chart is.
        show_values: write each value above its bar.
        label_zeros: write zeros too (``False`` for sparse histograms; a class with no objects
            reads better with its 0).
        max_name_chars: names longer than this are cut.

    Returns:
        ``[H, W, 3]`` uint8 BGR image.

    Raises:
        ValueError: ``values`` is not ``[K]`` or ``[S, K]`` for the ``K`` categories, or a value
            is negative or not finite.
    """
    data = np.asarray(values, np.float64)
    data = data[None] if data.ndim == 1 else data
    names = [str(n)[:max_name_chars] for n in categories]
    if data.ndim != 2 or data.shape[1] != len(names):
        raise ValueError(f"draw_bar_chart: values of shape {np.shape(values)} for {len(names)} categories "
                         "(expected [K] or [S, K])")
    if not np.isfinite(data).all() or (data < 0).any():
        raise ValueError("draw_bar_chart: values must be finite counts >= 0")
    num_series, num_bars = data.shape
    colors = list(colors or [PALETTE[i % len(PALETTE)] for i in range(num_series)])
    ticks = nice_ticks(float(data.max()) if data.size else 0.0, integer=bool((data == np.round(data)).all()))
    top_value = float(ticks[-1])
    tick_texts = [f"{t:.0f}" if float(t).is_integer() else f"{t:g}" for t in ticks]
    left = 16 + max(cv2.getTextSize(t, _FONT, 0.45, 1)[0][0] for t in tick_texts)
    left = max(left, 40)
    right, top = 20, 52
    width, height = size
    pitch = max(6 * num_series + 4, int((width - left - right) / max(num_bars, 1)))
    name_scale = 0.45
    name_w = max([cv2.getTextSize(n, _FONT, name_scale, 1)[0][0] for n in names] + [1])
    upward = name_w + 4 > pitch
    if upward:  # one line of upward text per bar: at least its height plus a gap
        pitch = max(pitch, cv2.getTextSize("Ag", _FONT, name_scale, 1)[0][1] + 8)
    width = max(width, left + right + pitch * num_bars)
    name_h = (name_w + 10) if upward else 22
    bottom = name_h + 34
    height = max(height, top + bottom + 240)  # long upward names never squash the plot
    x0, x1, y0, y1 = left, left + pitch * num_bars, top, height - bottom
    img = np.full((height, width, 3), 255, np.uint8)

    def to_y(v: float) -> int:
        return int(round(y1 - (v / top_value) * (y1 - y0)))

    for t, text in zip(ticks, tick_texts):
        gy = to_y(float(t))
        cv2.line(img, (x0, gy), (x1, gy), (225, 225, 225), 1)
        tw = cv2.getTextSize(text, _FONT, 0.45, 1)[0][0]
        cv2.putText(img, text, (x0 - tw - 6, gy + 5), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    gap = max(1, pitch // 6)  # space between the groups of bars
    bar_w = max(1, (pitch - 2 * gap) // num_series)
    value_scale = 0.4
    for k in range(num_bars):
        for s in range(num_series):
            v = float(data[s, k])
            bx0 = x0 + k * pitch + gap + s * bar_w
            if v > 0:
                cv2.rectangle(img, (bx0, to_y(v)), (bx0 + bar_w - 1, y1), colors[s], cv2.FILLED)
            if show_values and (v > 0 or label_zeros):
                text = f"{v:.0f}" if v.is_integer() else f"{v:.2g}"
                (tw, th), _ = cv2.getTextSize(text, _FONT, value_scale, 1)
                if tw <= bar_w + gap:
                    cv2.putText(img, text, (bx0 + (bar_w - tw) // 2, to_y(v) - 4), _FONT, value_scale, _BLACK,
                                1, cv2.LINE_AA)
    cv2.line(img, (x0, y0), (x0, y1), _BLACK, 1)
    cv2.line(img, (x0, y1), (x1, y1), _BLACK, 1)
    if upward:
        strip = _upward_text(names, pitch, name_scale)
        img[y1 + 4:y1 + 4 + strip.shape[0], x0:x0 + strip.shape[1]] = strip
    else:
        for k, name in enumerate(names):
            tw = cv2.getTextSize(name, _FONT, name_scale, 1)[0][0]
            cv2.putText(img, name, (x0 + k * pitch + (pitch - tw) // 2, y1 + 18), _FONT, name_scale, _BLACK, 1,
                        cv2.LINE_AA)
    xw = cv2.getTextSize(x_label, _FONT, 0.5, 1)[0][0]
    cv2.putText(img, x_label, (max(4, (x0 + x1) // 2 - xw // 2), height - 12), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, y_label, (4, top - 10), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, title, (4, 22), _FONT, 0.6, _BLACK, 1, cv2.LINE_AA)
    if series_labels:
        # Legend right-aligned on the line under the title (the y label's line), entry after entry.
        cursor = width - right
        for label, color in reversed(list(zip(series_labels, colors))):
            tw = cv2.getTextSize(label, _FONT, 0.45, 1)[0][0]
            cursor -= tw + 18
            cv2.rectangle(img, (cursor, top - 22), (cursor + 12, top - 10), color, cv2.FILLED)
            cv2.putText(img, label, (cursor + 16, top - 11), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
            cursor -= 14
    return img


def write_png(path: str | Path, img: np.ndarray) -> Path:
    """Write ``img`` as a PNG at ``path`` (parent folders created).

    Raises:
        OSError: OpenCV could not write the file (naming it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = cv2.imwrite(str(path), img)
    except cv2.error as error:  # e.g. no encoder for the extension
        raise OSError(f"could not write {path}: {str(error).strip().splitlines()[-1]}") from None
    if not written:
        raise OSError(f"could not write {path}")
    return path
