"""Precision-recall curve images (OpenCV-drawn PNGs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detkit.evaluation.pr_curves import PALETTE, draw_pr_curves, save_pr_curves
from detkit.evaluation.voc_eval import read_txt_dirs, voc_evaluate

PADILLA = Path(__file__).resolve().parents[1] / "fixtures" / "voc_eval" / "padilla"


def _colour_pixels(img: np.ndarray, bgr: tuple[int, int, int]) -> int:
    return int((np.abs(img.astype(int) - np.array(bgr)).sum(axis=2) <= 30).sum())


def test_pr_curve_pngs_are_written_and_drawn(tmp_path: Path) -> None:
    targets, predictions, names, _ = read_txt_dirs(PADILLA / "groundtruths", PADILLA / "detections")
    result = voc_evaluate(targets, predictions, names, iou_threshold=0.3)
    curves = {
        "person": (result.curves[0].recall, result.curves[0].precision),
        "made/up class": (np.linspace(0.05, 0.9, 30), np.linspace(1.0, 0.2, 30)),
        "third": (np.array([0.2, 0.4, 0.6]), np.array([0.9, 0.5, 0.3])),
    }
    paths = save_pr_curves(curves, tmp_path / "pr", {"person": result.ap["voc12"][0]}, title="VOC12")
    assert [p.name for p in paths] == ["all_classes.png", "pr_person.png", "pr_made_up_class.png", "pr_third.png"]
    overview = cv2.imread(str(paths[0]))
    assert overview is not None and overview.shape == (480, 640, 3)
    # Each curve has its own colour, drawn over many pixels; there is black text and axes too.
    for colour in PALETTE[:3]:
        assert _colour_pixels(overview, colour) > 200
    assert _colour_pixels(overview, (0, 0, 0)) > 500
    assert len(np.unique(overview.reshape(-1, 3), axis=0)) > 10
    single = cv2.imread(str(paths[1]))
    assert _colour_pixels(single, PALETTE[0]) > 200 and _colour_pixels(single, PALETTE[1]) == 0


def test_draw_handles_empty_and_nan_curves() -> None:
    img = draw_pr_curves({"empty": (np.zeros(0), np.zeros(0)), "nan": (np.array([np.nan]), np.array([0.5]))},
                         size=(320, 240))
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
