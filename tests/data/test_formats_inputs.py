"""detkit.data.formats refuses what it cannot do as asked, in one line naming the file or folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detkit.data import DatasetError
from detkit.data.formats import (
    ConversionError,
    DetectionAnnotations,
    ImageAnnotations,
    convert_dataset,
    read_class_names,
    read_yolo,
    write_annotations,
)
from detkit.data.shapes import ShapesDatasetPaths
from detkit.utils.image_io import ImageReadError, write_image_rgb


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("target", "occupied"), [
    ("coco", "annotations/instances_val.json"), ("voc", "ImageSets/Main/val.txt"), ("yolo", "labels/val")])
def test_a_split_already_there_is_refused_unless_overwrite(shapes: ShapesDatasetPaths, tmp_path: Path,
                                                           target: str, occupied: str) -> None:
    convert_dataset("coco", shapes.coco_json("val"), target, tmp_path)
    with pytest.raises(ConversionError) as error:
        convert_dataset("coco", shapes.coco_json("val"), target, tmp_path)
    assert str(tmp_path / occupied) in one_line(error) and "--overwrite" in str(error.value)
    report = convert_dataset("coco", shapes.coco_json("val"), target, tmp_path, overwrite=True)
    assert report.num_images == 4


def test_another_class_list_in_the_destination_is_refused(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    convert_dataset("coco", shapes.coco_json("train"), "yolo", tmp_path, class_names=["square", "circle"])
    with pytest.raises(ConversionError) as error:
        convert_dataset("coco", shapes.coco_json("val"), "yolo", tmp_path)
    assert "classes.txt lists the classes ['square', 'circle']" in one_line(error)
    assert not (tmp_path / "labels" / "val").exists()  # refused before anything of the split is written


def test_yolo_without_class_names_asks_for_them(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    convert_dataset("coco", shapes.coco_json("val"), "yolo", tmp_path)
    (tmp_path / "classes.txt").unlink()
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(DatasetError) as error:
        read_yolo(tmp_path, "val")
    assert "--names" in one_line(error) and str(tmp_path) in str(error.value)
    assert read_yolo(tmp_path, "val", ["circle", "square", "triangle"]).num_boxes > 0
    (tmp_path / "images" / "val").rename(tmp_path / "images" / "other")
    with pytest.raises(FileNotFoundError) as error:
        read_yolo(tmp_path, "other", ["circle", "square", "triangle"])
    assert f"YOLO label folder not found: {tmp_path / 'labels' / 'other'}" in one_line(error)
    (tmp_path / "labels" / "val").rename(tmp_path / "labels" / "other")
    with pytest.raises(FileNotFoundError) as error:  # no train split, and images/ holds only splits
        read_yolo(tmp_path, None, ["circle", "square", "triangle"])
    assert "holds no images but the splits ['other']; choose one (--split)" in one_line(error)
    with pytest.raises(DatasetError) as error:  # too few names: YOLODetection names the line
        read_yolo(tmp_path, "other", ["circle"])
    assert ".txt: line" in one_line(error)


def test_class_name_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("cat\n\n dog \n")
    (tmp_path / "b.yaml").write_text("names:\n  1: dog\n  0: cat\n")
    (tmp_path / "c.yaml").write_text("names: [cat, dog]\n")
    (tmp_path / "d.json").write_text(json.dumps({"names": ["cat", "dog"]}))
    for name in ("a.txt", "b.yaml", "c.yaml", "d.json"):
        if name.endswith(".yaml"):
            pytest.importorskip("yaml")
        assert read_class_names(tmp_path / name) == ["cat", "dog"], name
    (tmp_path / "dup.txt").write_text("cat\ncat\n")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "bad.json").write_text(json.dumps({"names": [1, 2]}))
    for name, message in (("dup.txt", "duplicate class names ['cat']"), ("empty.txt", "no class names"),
                          ("bad.json", "expected a 'names' list")):
        with pytest.raises(DatasetError) as error:
            read_class_names(tmp_path / name)
        assert message in one_line(error) and name in str(error.value)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_class_names(tmp_path / "missing.txt")


def test_sources_that_are_not_there_or_not_valid(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        convert_dataset("coco", tmp_path, "yolo", tmp_path / "out")
    assert "instances_train.json" in one_line(error)
    with pytest.raises(FileNotFoundError, match="no Annotations/ folder"):
        convert_dataset("voc", tmp_path, "yolo", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="images/train"):
        convert_dataset("yolo", tmp_path, "voc", tmp_path / "out")
    truncated = tmp_path / "cut.json"
    truncated.write_text(shapes.coco_json("val").read_text()[:200])
    with pytest.raises(DatasetError) as error:
        convert_dataset("coco", truncated, "voc", tmp_path / "out")
    assert "cut.json: not valid json" in one_line(error)
    with pytest.raises(ImageReadError) as error:  # the json's images are not in this folder
        convert_dataset("coco", shapes.coco_json("val"), "voc", tmp_path / "out", image_dir=tmp_path)
    assert "image file(s) not found" in str(error.value)
    with pytest.raises(ValueError, match="unknown target format 'darknet'"):
        convert_dataset("coco", shapes.coco_json("val"), "darknet", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written by a conversion that failed


def test_images_that_would_share_a_stem_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    write_image_rgb(tmp_path / "x" / "a.png", np.zeros((8, 8, 3), np.uint8))
    images = [ImageAnnotations(name, 8, 8, np.zeros((0, 4)), [], image_path=tmp_path / "x" / "a.png")
              for name in ("x/a.png", "x__a.jpg")]
    with pytest.raises(ConversionError) as error:
        write_annotations("voc", DetectionAnnotations(["a"], images), tmp_path / "out")
    assert "'x/a.png' and 'x__a.jpg' would both be 'x__a'" in one_line(error)
    with pytest.raises(ValueError, match="boxes but"):
        ImageAnnotations("a.png", 8, 8, [[0, 0, 1, 1]], [0, 1])
