"""The OpenCV charts: line charts (gaps at NaN, any axis range), bar charts and the annotated matrix."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.evaluation.charts import (PALETTE, Series, draw_bar_chart, draw_line_chart, draw_matrix, nice_ticks,
                                     write_png)


def _pixels(img: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    return (np.abs(img.astype(int) - np.array(bgr)).sum(axis=2) <= 30)


def test_a_nan_breaks_the_line() -> None:
    x = np.linspace(0, 1, 11)
    y = np.full(11, 0.5)
    y[4:7] = np.nan
    img = draw_line_chart([Series(x, y, PALETTE[3], None)], "t", "x", "y")
    row = _pixels(img, PALETTE[3]).any(axis=0)  # columns holding the colour
    # The plot spans pixels 60..620: points 0 .. 0.3 (pixels 60..228) and 0.7 .. 1 (452..620) are
    # joined, nothing is drawn between 0.3 and 0.7.
    assert row[70:220].all() and not row[240:440].any() and row[460:610].all()


def test_axis_ranges_place_points() -> None:
    img = draw_line_chart([Series(np.array([2.0, 2.0]), np.array([0.0, 10.0]), PALETTE[2], None, 3)],
                          "t", "x", "y", x_range=(0.0, 4.0), y_range=(0.0, 10.0))
    columns = np.flatnonzero(_pixels(img[60:400], PALETTE[2]).any(axis=0))
    assert abs(columns.mean() - 340) <= 2  # halfway between pixels 60 and 620


def test_matrix_cells_are_shaded_and_written(tmp_path: Path) -> None:
    values = np.array([[5, 0], [1, 4]])
    img = draw_matrix(values, ["a", "b"], ["a", "b"], "m", "rows", "cols", cell=40)
    dark = _pixels(img, PALETTE[0])
    assert dark.sum() > 800  # the full cell [0, 0]
    path = write_png(tmp_path / "sub" / "m.png", img)
    assert cv2.imread(str(path)).shape == img.shape
    with pytest.raises(OSError, match="could not write"):
        write_png(tmp_path / "m.unknown-extension", img)


def _bar_heights(img: np.ndarray, bgr: tuple[int, int, int]) -> list[int]:
    """Height in pixels of each run of columns holding ``bgr`` (one run per bar), left to right."""
    mask = _pixels(img, bgr)
    columns = mask.any(axis=0)
    edges = np.flatnonzero(np.diff(np.r_[0, columns.astype(np.int8), 0]))
    return [int(mask[:, start:stop].sum(axis=0).max()) for start, stop in zip(edges[::2], edges[1::2])]


def test_bar_heights_are_proportional_to_the_values() -> None:
    img = draw_bar_chart([40, 0, 10, 20], ["a", "b", "c", "d"], "t", "class", "objects (count)",
                         show_values=False)
    heights = _bar_heights(img, PALETTE[0])
    assert len(heights) == 3  # the zero draws no bar
    tall, short, middle = heights
    assert abs(tall / short - 4.0) < 0.1 and abs(tall / middle - 2.0) < 0.05


def test_grouped_bars_have_one_colour_per_series_and_a_legend() -> None:
    img = draw_bar_chart([[3, 6], [1, 2]], ["x", "y"], "t", "class", "count",
                         series_labels=["objects", "images"], show_values=False)
    blue, orange = _bar_heights(img[50:], PALETTE[0]), _bar_heights(img[50:], PALETTE[1])
    assert len(blue) == 2 and len(orange) == 2
    assert abs(blue[1] / blue[0] - 2.0) < 0.05 and abs(blue[0] / orange[0] - 3.0) < 0.1
    # the legend swatches (under the title, above the plot) carry both colours
    assert _pixels(img[25:48], PALETTE[0]).sum() > 50 and _pixels(img[25:48], PALETTE[1]).sum() > 50


def test_many_categories_widen_the_chart_and_bad_values_are_refused() -> None:
    names = [f"class_{i}" for i in range(200)]
    img = draw_bar_chart(np.arange(200), names, "t", "class", "count", size=(640, 480))
    assert img.shape[1] >= 200 * 14  # each upward name gets its line
    with pytest.raises(ValueError, match="for 3 categories"):
        draw_bar_chart([1, 2], ["a", "b", "c"], "t", "x", "y")
    with pytest.raises(ValueError, match="finite counts"):
        draw_bar_chart([1, -2], ["a", "b"], "t", "x", "y")


def test_nice_ticks_are_round_and_cover_the_maximum() -> None:
    assert nice_ticks(30).tolist() == [0, 10, 20, 30]
    assert nice_ticks(4800).tolist() == [0, 1000, 2000, 3000, 4000, 5000]
    assert nice_ticks(0).tolist() == [0, 1]
    assert nice_ticks(7)[-1] >= 7
    assert nice_ticks(2).tolist() == [0, 0.5, 1, 1.5, 2] and nice_ticks(2, integer=True).tolist() == [0, 1, 2]
