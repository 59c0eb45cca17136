"""What a target format cannot hold is counted and printed, never dropped silently; what it can
hold (COCO: crowd flags, polygons, RLE; VOC: difficult flags) comes through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detkit.data import CocoDetection, VOCDetection, YOLODetection
from detkit.data.formats import (
    DetectionAnnotations,
    ImageAnnotations,
    convert_dataset,
    read_voc,
    write_annotations,
    write_coco,
    write_voc,
    write_yolo,
)
from detkit.utils.image_io import write_image_rgb

POLYGON = [[10.0, 10.0, 40.0, 10.0, 40.0, 30.0, 10.0, 30.0]]


def write_crowd_coco(root: Path) -> Path:
    """One 64x80 image: a polygon object, a crowd object (uncompressed RLE), a box without
    segmentation that sticks out of the image (clipped when read)."""
    (root / "images").mkdir(parents=True)
    write_image_rgb(root / "images" / "a.png", np.zeros((64, 80, 3), np.uint8))
    crowd_mask = np.zeros((64, 80), np.uint8)
    crowd_mask[40:60, 50:75] = 1
    uncompressed = {"size": [64, 80], "counts": _rle_counts(crowd_mask)}
    document = {
        "images": [{"id": 5, "file_name": "a.png", "height": 64, "width": 80}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0,
             "segmentation": POLYGON},
            {"id": 2, "image_id": 5, "category_id": 2, "bbox": [50, 40, 25, 20], "area": 500, "iscrowd": 1,
             "segmentation": uncompressed},
            {"id": 3, "image_id": 5, "category_id": 2, "bbox": [70, 2, 20, 10], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    path = root / "instances_train.json"
    path.write_text(json.dumps(document))
    return path


def _rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts (column-major runs, starting with zeros)."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], changes])).tolist()


def test_yolo_reports_crowd_and_segmentations_and_drops_the_crowd_box(tmp_path: Path) -> None:
    report = convert_dataset("coco", write_crowd_coco(tmp_path / "src"), "yolo", tmp_path / "yolo")
    assert report.lost == {"crowd annotations dropped (YOLO txt has no crowd flag)": 1,
                           "segmentations dropped (YOLO detection txt holds boxes only)": 1}
    assert report.read_fixes == {"boxes clipped to the image": 1}
    summary = report.summary()
    assert "yolo cannot hold: 1 crowd annotations dropped" in summary and "a.png: box 1" in summary
    assert "reading the source: 1 boxes clipped to the image" in summary
    assert (report.num_images, report.num_boxes) == (1, 2)
    written = YOLODetection(tmp_path / "yolo" / "images" / "train", ["cat", "dog"]).get_target(0)
    np.testing.assert_allclose(written["boxes"].numpy(), [[10, 10, 40, 30], [70, 2, 80, 12]], atol=1e-4)
    assert written["labels"].tolist() == [0, 1]


def test_voc_reports_crowd_and_segmentations(tmp_path: Path) -> None:
    report = convert_dataset("coco", write_crowd_coco(tmp_path / "src"), "voc", tmp_path / "voc")
    assert report.lost == {"crowd annotations dropped (VOC has no crowd flag)": 1,
                           "segmentations dropped (VOC xml holds boxes; its masks are separate PNG files)": 1}
    target = VOCDetection(tmp_path / "voc", "train", image_suffix=".png", class_names=["cat", "dog"]).get_target(0)
    assert target["boxes"].tolist() == [[10, 10, 40, 30], [70, 2, 80, 12]]


def test_coco_keeps_crowd_flags_polygons_and_rle(tmp_path: Path) -> None:
    source = write_crowd_coco(tmp_path / "src")
    report = convert_dataset("coco", source, "coco", tmp_path / "coco")
    assert not report.lost and "nothing lost" in report.summary()
    before = CocoDetection(tmp_path / "src" / "images", source, with_masks=True).get_target(0)
    after = CocoDetection(tmp_path / "coco" / "train", tmp_path / "coco" / "annotations" / "instances_train.json",
                          with_masks=True).get_target(0)
    for key in ("boxes", "labels", "iscrowd", "area", "masks"):
        assert after[key].tolist() == before[key].tolist(), key
    assert after["iscrowd"].tolist() == [0, 1, 0] and after["masks"].sum() == 600 + 500 + 10 * 10
    written = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())["annotations"]
    assert written[0]["segmentation"] == POLYGON and "segmentation" not in written[2]


def difficult_voc(root: Path) -> DetectionAnnotations:
    """A VOC folder with one difficult object, written and read back."""
    (root / "src").mkdir(parents=True)
    write_image_rgb(root / "src" / "b.png", np.zeros((50, 60, 3), np.uint8))
    image = ImageAnnotations("b.png", 60, 50, [[0, 0, 10, 10], [5, 5, 30, 40]], [1, 0],
                             image_path=root / "src" / "b.png", difficult=np.array([False, True]))
    write_voc(DetectionAnnotations(["bird", "boat"], [image], "memory", "voc"), root / "voc", "train")
    return read_voc(root / "voc", "train")


def test_difficult_flags_survive_voc_and_are_reported_by_coco_and_yolo(tmp_path: Path) -> None:
    annotations = difficult_voc(tmp_path)
    assert annotations.class_names == ["bird", "boat"]  # from classes.txt, not sorted names
    assert annotations.images[0].difficult.tolist() == [False, True]
    assert annotations.images[0].boxes.tolist() == [[0, 0, 10, 10], [5, 5, 30, 40]]
    xml = (tmp_path / "voc" / "Annotations" / "b.xml").read_text()
    assert "<xmin>1</xmin>" in xml and "<xmax>10</xmax>" in xml  # 1-based inclusive indices
    coco = write_coco(annotations, tmp_path / "coco", "train")
    assert coco.lost == {"difficult flags (COCO has no difficult field: written as ordinary annotations)": 1}
    yolo = write_yolo(annotations, tmp_path / "yolo", "train")
    assert yolo.lost == {"difficult flags (YOLO txt has none: written as ordinary objects)": 1}
    assert yolo.num_boxes == coco.num_boxes == 2
    again = write_voc(annotations, tmp_path / "voc2", "train")
    assert not again.lost
    assert (tmp_path / "voc2" / "Annotations" / "b.xml").read_text().replace("voc2", "voc") == xml


def test_coco_to_yolo_skipping_classes_counts_what_the_reader_skipped(tmp_path: Path) -> None:
    report = convert_dataset("coco", write_crowd_coco(tmp_path / "src"), "yolo", tmp_path / "yolo",
                             class_names=["dog"])
    assert report.read_fixes["annotations of classes not in class_names skipped"] == 1
    assert (tmp_path / "yolo" / "classes.txt").read_text() == "dog\n"
    assert "1 annotations of classes not in class_names skipped" in report.summary()


@pytest.mark.parametrize("target", ["voc", "yolo"])
def test_sub_folders_of_coco_file_names_become_flat_stems(tmp_path: Path, target: str) -> None:
    for folder in ("x", "y"):
        (tmp_path / "src" / folder).mkdir(parents=True)
        write_image_rgb(tmp_path / "src" / folder / "same.png", np.zeros((8, 8, 3), np.uint8))
    images = [ImageAnnotations(f"{folder}/same.png", 8, 8, [[1, 1, 4, 4]], [0],
                               image_path=tmp_path / "src" / folder / "same.png") for folder in ("x", "y")]
    report = write_annotations(
        target, DetectionAnnotations(["a"], images, "memory", "coco"), tmp_path / "out")
    assert report.num_images == 2
    names = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert names == ["x__same.png", "y__same.png"]
