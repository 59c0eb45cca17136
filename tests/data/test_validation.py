"""Load-time checks: each problem is found, fixed or reported, with the file and item named."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import detkit.data
from detkit.data import CocoDetection, DatasetError, DatasetReport, ImageReadError, VOCDetection, check_class_names
from detkit.data.image_io import write_image_rgb


def _coco(tmp_path: Path, boxes: list[list[float]], category_ids: list[int] | None = None) -> Path:
    write_image_rgb(tmp_path / "img.png", np.zeros((40, 50, 3), np.uint8))  # H 40, W 50
    category_ids = category_ids or [1] * len(boxes)
    data = {
        "images": [{"id": 5, "file_name": "img.png", "height": 40, "width": 50}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 100 + k, "image_id": 5, "category_id": c, "bbox": box, "iscrowd": 0, "area": 1.0}
            for k, (box, c) in enumerate(zip(boxes, category_ids))
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_missing_image_file_is_named_at_load(tmp_path: Path) -> None:
    annotation_file = _coco(tmp_path, [[1, 1, 5, 5]])
    (tmp_path / "img.png").unlink()
    with pytest.raises(ImageReadError, match=r"ann\.json: 1 image file\(s\) not found:\s+\S*img\.png"):
        CocoDetection(tmp_path, annotation_file)


def test_corrupt_image_is_named_when_read_and_by_verify_images(tmp_path: Path) -> None:
    annotation_file = _coco(tmp_path, [[1, 1, 5, 5]])
    data = json.loads(annotation_file.read_text())
    data["images"][0]["file_name"] = "broken.jpg"
    annotation_file.write_text(json.dumps(data))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    dataset = CocoDetection(tmp_path, annotation_file)  # exists: found at load
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        dataset[0]
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        CocoDetection(tmp_path, annotation_file, verify_images=True)


def test_image_size_different_from_annotations(tmp_path: Path) -> None:
    annotation_file = _coco(tmp_path, [[1, 1, 5, 5]])
    write_image_rgb(tmp_path / "img.png", np.zeros((41, 50, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"img\.png decodes to 50x41.*say 50x40"):
        CocoDetection(tmp_path, annotation_file)[0]
    with pytest.raises(DatasetError, match=r"img\.png is 50x41"):
        CocoDetection(tmp_path, annotation_file, verify_images=True)


def test_box_outside_is_clipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="detkit.data"):
        dataset = CocoDetection(tmp_path, _coco(tmp_path, [[-3, 10, 10, 10], [45, 30, 20, 20], [5, 5, 5, 5]]))
    boxes = dataset.get_target(0)["boxes"].tolist()
    assert boxes == [[0, 10, 7, 20], [45, 30, 50, 40], [5, 5, 10, 10]]
    report = dataset.load_report
    assert isinstance(report, DatasetReport)
    assert report.counts["boxes clipped to the image"] == 2
    assert "ann.json: image 5 (img.png): box 0" in report.examples["boxes clipped to the image"][0]
    messages = [record.getMessage() for record in caplog.records if record.name == "detkit.data"]
    assert len(messages) == 1 and "2 boxes clipped to the image" in messages[0]  # logged once


def test_degenerate_box_is_dropped_and_counted(tmp_path: Path) -> None:
    dataset = CocoDetection(tmp_path, _coco(tmp_path, [[5, 5, 0, 4], [60, 5, 5, 5], [5, 5, 5, 5]]), with_masks=True)
    target = dataset.get_target(0)
    assert target["boxes"].tolist() == [[5, 5, 10, 10]]  # zero width, and wholly outside -> dropped
    assert target["masks"].shape == (1, 40, 50) and len(target["iscrowd"]) == 1  # fields stay aligned
    assert dataset.load_report.counts["degenerate boxes dropped"] == 2
    assert "image 5 (img.png): box 0" in dataset.load_report.examples["degenerate boxes dropped"][0]


def test_unknown_category_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"ann\.json: image 5 \(img\.png\): annotation 101 has category_id 9"):
        CocoDetection(tmp_path, _coco(tmp_path, [[1, 1, 5, 5], [1, 1, 5, 5]], category_ids=[1, 9]))


def test_unknown_voc_class_is_named(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "x1.xml").write_text(
        "<annotation><size><width>10</width><height>10</height></size>"
        "<object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
        "</object></annotation>"
    )
    with pytest.raises(DatasetError, match=r"x1\.xml: object 0 has class 'unicorn'"):
        VOCDetection(tmp_path, split=None, check_files=False)


def test_class_list_mismatch_shows_a_diff() -> None:
    check_class_names(["a", "b"], ["a", "b"])
    with pytest.raises(DatasetError, match=r"only in the dataset: \['c'\][\s\S]*only in the model: \['d'\]"):
        check_class_names(["a", "b", "c"], ["a", "b", "d"])
    with pytest.raises(DatasetError, match=r"label 0: dataset 'b' vs model 'a'[\s\S]*different order"):
        check_class_names(["b", "a"], ["a", "b"])


def test_load_report_is_a_deprecated_name_of_dataset_report() -> None:
    with pytest.warns(DeprecationWarning, match="DatasetReport"):
        assert detkit.data.LoadReport is DatasetReport
    with pytest.warns(DeprecationWarning, match="DatasetReport"):
        from detkit.data.validation import LoadReport
    assert LoadReport is DatasetReport
