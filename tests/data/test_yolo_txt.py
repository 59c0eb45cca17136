"""YOLODetection: normalised cxcywh -> xyxy pixels, missing label files, bad lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detkit.data import DatasetError, YOLODetection
from detkit.data.image_io import write_image_rgb


def _make(tmp_path: Path, label_text: str) -> Path:
    images, labels = tmp_path / "train" / "images", tmp_path / "train" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    write_image_rgb(images / "a.png", np.zeros((50, 100, 3), np.uint8))  # H 50, W 100
    write_image_rgb(images / "b.jpg", np.zeros((20, 20, 3), np.uint8))  # no label file
    (labels / "a.txt").write_text(label_text)
    return images


def test_boxes_and_labels(tmp_path: Path) -> None:
    images = _make(tmp_path, "1 0.5 0.5 0.2 0.4\n\n0 0.05 0.1 0.2 0.2\n")
    dataset = YOLODetection(images, ["cat", "dog"])
    assert dataset.image_ids == ["a", "b"]
    image, target = dataset[0]
    assert image.shape == (3, 50, 100)
    # (cx, cy, w, h) * (W, H, W, H): (50, 25, 20, 20) -> [40, 15, 60, 35]; (5, 5, 20, 10) ->
    # [-5, 0, 15, 10], clipped to the image and counted.
    torch.testing.assert_close(target["boxes"], torch.tensor([[40.0, 15.0, 60.0, 35.0], [0.0, 0.0, 15.0, 10.0]]))
    assert dataset.load_report.counts["boxes clipped to the image"] == 1
    assert target["labels"].tolist() == [1, 0]
    assert dataset[1][1]["boxes"].shape == (0, 4)


def test_class_out_of_range_names_file_and_line(tmp_path: Path) -> None:
    images = _make(tmp_path, "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match=r"a\.txt: line 2: class 2"):
        YOLODetection(images, ["cat", "dog"])
