"""The OpenCV charts: line charts (gaps at NaN, any axis range) and the annotated matrix."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.evaluation.charts import PALETTE, Series, draw_line_chart, draw_matrix, write_png


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
