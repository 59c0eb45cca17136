"""Malformed annotation files: every reader stops with one line naming the file and the record.

One parametrised test per format (COCO json, VOC xml, VOC instance PNGs, YOLO txt, WIDER FACE
lists, the shapes generator's record), each case a class of fault and the message it must give.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from detkit.data import (
    CocoDetection,
    DatasetError,
    ImageReadError,
    VOCDetection,
    VOCInstanceSegmentation,
    WiderFaceDetection,
    YOLODetection,
    parse_wider_face_gt,
    shapes_coco_dataset,
)
from detkit.data.image_io import write_image_rgb


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------- COCO


def _coco_document() -> dict[str, Any]:
    return {
        "images": [{"id": 5, "file_name": "img.png", "height": 40, "width": 50}],
        "categories": [{"id": 1, "name": "thing"}, {"id": 3, "name": "other"}],
        "annotations": [{"id": 100, "image_id": 5, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0,
                         "area": 200.0, "segmentation": [[1, 2, 11, 2, 11, 22]]}],
    }


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[], str]:
    def text() -> str:
        document = _coco_document()
        replaced = change(document)
        return json.dumps(document if replaced is None else replaced)

    return text


def _set(path: str, value: Any) -> Callable[[], str]:
    """Set ``document[k1][i][k2]`` from ``"k1.i.k2"`` (``value`` DELETE removes the key)."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return _edit(change)


DELETE = object()

COCO_CASES = {
    "cut in half": (lambda: json.dumps(_coco_document())[:90], r"ann\.json: not valid json: .* at line 1, column \d+"),
    "empty file": (lambda: "", r"ann\.json: .*is empty"),
    "not an object": (lambda: "[1, 2, 3]", r"ann\.json: expected a json object with 'images', got a list"),
    "no images": (_set("images", DELETE), r"ann\.json: no 'images' list"),
    "annotations not a list": (_set("annotations", {"a": 1}), r"ann\.json: 'annotations' must be a list"),
    "no categories": (_set("categories", DELETE), r"ann\.json: no 'categories' list"),
    "images not a list": (_set("images", {"id": 5}), r"ann\.json: 'images' must be a list, got a dict"),
    "image not an object": (_set("images.0", 5), r"ann\.json: images\[0\] must be a json object"),
    "image without id": (_set("images.0.id", DELETE), r"ann\.json: images\[0\]: missing 'id'"),
    "image without height": (_set("images.0.height", DELETE), r"images\[0\] \(id 5\): missing 'height'"),
    "height not a number": (_set("images.0.height", "abc"), r"images\[0\] \(id 5\): 'height' must be a number"),
    "zero width": (_set("images.0.width", 0), r"images\[0\] \(id 5\): 'width' must be > 0"),
    "annotation without image_id": (_set("annotations.0.image_id", DELETE),
                                    r"annotations\[0\] \(id 100\): missing 'image_id'"),
    "annotation without bbox": (_set("annotations.0.bbox", DELETE),
                                r"image 5 \(img\.png\): annotation 100: missing 'bbox'"),
    "bbox of 3 numbers": (_set("annotations.0.bbox", [1, 2, 3]),
                          r"image 5 \(img\.png\): annotation 100: 'bbox' must be 4 numbers \[x, y, width, height\]"),
    "bbox with a string": (_set("annotations.0.bbox", [1, 2, "3", "abc"]),
                           r"annotation 100: 'bbox' must be 4 finite numbers .*'abc'"),
    "bbox null": (_set("annotations.0.bbox", None), r"annotation 100: 'bbox' must be 4 numbers"),
    "bbox with NaN": (_set("annotations.0.bbox", [1, 2, float("nan"), 3]),
                      r"annotation 100: 'bbox' must be 4 finite numbers .*nan"),
    "category id a list": (_set("annotations.0.category_id", [1]),
                           r"annotation 100: 'category_id' must be an int"),
    "iscrowd 2": (_set("annotations.0.iscrowd", 2), r"annotation 100: 'iscrowd' must be 0 or 1"),
    "duplicate category id": (_set("categories.1.id", 1), r"ann\.json: duplicate category ids \[1\]"),
    "category without name": (_set("categories.0.name", DELETE), r"categories\[0\]: missing 'name'"),
    "bad polygon": (_set("annotations.0.segmentation", [[1, 2, 3]]),
                    r"annotation 100: 'segmentation' polygons must be lists of >= 3 x, y pairs"),
    "polygon with a string": (_set("annotations.0.segmentation", [[1, 2, 11, 2, 11, "x"]]),
                              r"annotation 100: 'segmentation' polygon coordinates must be finite numbers"),
    "segmentation a number": (_set("annotations.0.segmentation", 7),
                              r"annotation 100: 'segmentation' must be polygons .* got int"),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_coco_malformed_file_names_file_and_record(tmp_path: Path, case: str) -> None:
    text, pattern = COCO_CASES[case]
    write_image_rgb(tmp_path / "img.png", np.zeros((40, 50, 3), np.uint8))
    path = tmp_path / "ann.json"
    path.write_text(text())
    with pytest.raises(DatasetError) as caught:
        CocoDetection(tmp_path, path, with_masks=True)
    assert re.search(pattern, _one_line(caught.value)), caught.value
    assert str(path) in str(caught.value)


def test_coco_well_formed_document_loads(tmp_path: Path) -> None:
    """The document the cases above break is valid: the errors come from the breakage."""
    write_image_rgb(tmp_path / "img.png", np.zeros((40, 50, 3), np.uint8))
    (tmp_path / "ann.json").write_text(json.dumps(_coco_document()))
    dataset = CocoDetection(tmp_path, tmp_path / "ann.json", with_masks=True)
    assert dataset[0][1]["boxes"].tolist() == [[1.0, 2.0, 11.0, 22.0]]


def test_coco_image_info_file_loads_without_ground_truth(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # COCO's test-dev ships image_info_test-dev2017.json: images and categories, no annotations.
    write_image_rgb(tmp_path / "img.png", np.zeros((40, 50, 3), np.uint8))
    document = _coco_document()
    del document["annotations"]
    (tmp_path / "ann.json").write_text(json.dumps(document))
    with caplog.at_level("WARNING"):
        dataset = CocoDetection(tmp_path, tmp_path / "ann.json")
    assert len(dataset) == 1 and dataset[0][1]["boxes"].shape == (0, 4)
    assert "has no 'annotations' list: an image-info file" in caplog.text


def test_coco_malformed_rle_is_named_when_decoded(tmp_path: Path) -> None:
    write_image_rgb(tmp_path / "img.png", np.zeros((40, 50, 3), np.uint8))
    document = _coco_document()
    document["annotations"][0]["segmentation"] = {"size": [40, 50], "counts": {"not": "counts"}}
    (tmp_path / "ann.json").write_text(json.dumps(document))
    dataset = CocoDetection(tmp_path, tmp_path / "ann.json", with_masks=True)
    with pytest.raises(DatasetError, match=r"ann\.json: image 5 \(img\.png\): box 0: cannot decode its 'segmentation'"):
        dataset[0]


# -------------------------------------------------------------------------------------- VOC

_VOC_OBJECT = ("<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
               "<ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>")


def _voc_xml(width: str = "50", name: str = "cat", xmin: str = "1", difficult: str = "0",
             object_xml: str | None = None) -> str:
    obj = object_xml if object_xml is not None else _VOC_OBJECT.format(name=name, xmin=xmin, difficult=difficult)
    return (f"<annotation><filename>a.jpg</filename><size><width>{width}</width><height>45</height>"
            f"<depth>3</depth></size>{obj}</annotation>")


VOC_CASES = {
    "truncated": (_voc_xml()[:70], r"a\.xml: not well-formed xml at line 1, column \d+"),
    "empty file": ("", r"a\.xml: not well-formed xml"),
    "missing bndbox": (_voc_xml(object_xml="<object><name>cat</name></object>"),
                       r"a\.xml: object 0 \(cat\): missing <bndbox>"),
    "missing xmax": (_voc_xml(object_xml="<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                         "<ymax>5</ymax></bndbox></object>"),
                     r"a\.xml: object 0 \(cat\): missing <bndbox/xmax>"),
    "non-numeric xmin": (_voc_xml(xmin="abc"), r"a\.xml: object 0 \(cat\): <xmin> must be a number, got 'abc'"),
    "empty xmin": (_voc_xml(xmin=" "), r"a\.xml: object 0 \(cat\): empty <bndbox/xmin>"),
    "infinite xmin": (_voc_xml(xmin="inf"), r"a\.xml: object 0 \(cat\): <xmin> must be a finite number"),
    "empty name": (_voc_xml(name=""), r"a\.xml: object 0: empty <name>"),
    "missing name": (_voc_xml(object_xml="<object><bndbox/></object>"), r"a\.xml: object 0: missing <name>"),
    "non-numeric width": (_voc_xml(width="wide"), r"a\.xml: <size><width> must be a number, got 'wide'"),
    "zero width": (_voc_xml(width="0"), r"a\.xml: <size><width> must be > 0"),
    "missing size": ("<annotation><object/></annotation>", r"a\.xml: missing <size/height>"),
    "bad difficult": (_voc_xml(difficult="maybe"), r"a\.xml: object 0 \(cat\): <difficult> must be 0 or 1"),
}


@pytest.mark.parametrize("case", sorted(VOC_CASES))
@pytest.mark.parametrize("reader", ["detection", "instances"])
def test_voc_malformed_xml_names_file_object_and_field(tmp_path: Path, case: str, reader: str) -> None:
    text, pattern = VOC_CASES[case]
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(text)
    with pytest.raises(DatasetError) as caught:
        if reader == "detection":
            VOCDetection(tmp_path, image_ids=["a"], class_names=["cat"], check_files=False)
        else:
            (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
            (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
            VOCInstanceSegmentation(tmp_path, "train", class_names=["cat"], check_files=False)
    assert re.search(pattern, _one_line(caught.value)), caught.value


def test_voc_well_formed_xml_loads(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_voc_xml())
    dataset = VOCDetection(tmp_path, image_ids=["a"], class_names=["cat"], check_files=False)
    assert dataset.get_target(0)["boxes"].tolist() == [[0.0, 1.0, 30.0, 40.0]]


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n truncated", b"not an image at all"])
def test_voc_corrupt_segmentation_png_is_named(tmp_path: Path, content: bytes) -> None:
    for folder in ("Annotations", "JPEGImages", "SegmentationObject", "ImageSets/Segmentation"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "Annotations" / "a.xml").write_text(_voc_xml())
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    write_image_rgb(tmp_path / "JPEGImages" / "a.png", np.zeros((45, 50, 3), np.uint8))
    (tmp_path / "SegmentationObject" / "a.png").write_bytes(content)
    dataset = VOCInstanceSegmentation(tmp_path, "train", class_names=["cat"], image_suffix=".png")
    with pytest.raises(ImageReadError) as caught:
        dataset[0]
    assert "SegmentationObject" in _one_line(caught.value) and "a.png" in str(caught.value)


# ------------------------------------------------------------------------------------- YOLO

YOLO_CASES = {
    "four fields": ("0 0.5 0.5 0.2\n", r"a\.txt: line 1: expected 5 fields 'class cx cy w h', got 4"),
    "six fields": ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 0.9\n", r"a\.txt: line 2: expected 5 fields .*got 6"),
    "non-numeric cx": ("0 abc 0.5 0.2 0.2\n", r"a\.txt: line 1: cx must be a number, got 'abc'"),
    "non-numeric class": ("cat 0.5 0.5 0.2 0.2\n", r"a\.txt: line 1: the class must be a number, got 'cat'"),
    "fractional class": ("1.5 0.5 0.5 0.2 0.2\n", r"a\.txt: line 1: the class must be an integer, got '1.5'"),
    "nan size": ("\n\n0 0.5 0.5 nan 0.2\n", r"a\.txt: line 3: w must be a finite number, got 'nan'"),
}


@pytest.mark.parametrize("case", sorted(YOLO_CASES))
def test_yolo_malformed_line_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    text, pattern = YOLO_CASES[case]
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    write_image_rgb(images / "a.png", np.zeros((20, 30, 3), np.uint8))
    (labels / "a.txt").write_text(text)
    with pytest.raises(DatasetError) as caught:
        YOLODetection(images, ["cat", "dog"])
    assert re.search(pattern, _one_line(caught.value)), caught.value


def test_yolo_binary_label_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_image_rgb(tmp_path / "images" / "a.png", np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DatasetError, match=r"a\.txt: YOLO label file is not UTF-8 text"):
        YOLODetection(tmp_path / "images", ["cat"])


# ------------------------------------------------------------------------------- WIDER FACE

WIDER_CASES = {
    "count not a number": ("a.jpg\nmany\n", r"<lines>:2: expected the face count of 'a\.jpg'.*got 'many'"),
    "count missing at the end": ("a.jpg\n", r"<lines>:2: expected the face count .*\(the file ends\)"),
    "negative count": ("a.jpg\n-1\n", r"<lines>:2: expected the face count .*got '-1'"),
    "short face line": ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n1 2 3 4\n",
                        r"<lines>:4: a face line of a\.jpg needs 10 numbers .*got 4 fields"),
    "non-numeric face field": ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nb.jpg\n1\n1 two 3 4 0 0 0 0 0 0\n",
                               r"<lines>:6: a face line of b\.jpg needs 10 numbers .*y is 'two'"),
    "infinite width": ("a.jpg\n1\n1 2 inf 4 0 0 0 0 0 0\n", r"<lines>:3: .*w is 'inf', not a finite number"),
    "fractional flag": ("a.jpg\n1\n1 2 3 4 0.5 0 0 0 0 0\n", r"<lines>:3: .*blur is '0\.5', not an integer"),
    "count too small": ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n5 6 7 8 0 0 0 0 0 0\nb.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n",
                        r"<lines>:4: expected an image path, got '5 6 7 8 .*count of the image before is too small"),
}


@pytest.mark.parametrize("case", sorted(WIDER_CASES))
def test_wider_face_bad_line_is_named(case: str) -> None:
    text, pattern = WIDER_CASES[case]
    with pytest.raises(DatasetError) as caught:
        parse_wider_face_gt(text.splitlines())
    assert re.search(pattern, _one_line(caught.value)), caught.value


def test_wider_face_dataset_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "gt.txt").write_text("a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n")
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "gt.txt")) + r":3: "):
        WiderFaceDetection(tmp_path, tmp_path / "gt.txt")


# ----------------------------------------------------------------------------------- shapes


def test_shapes_corrupt_generation_record_is_named(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    root.mkdir()
    (root / "generation.json").write_text('{"num_train": 4, "num_val"')
    with pytest.raises(DatasetError, match=r"generation\.json: not valid json: .*\(the file ends there: truncated\?\)"):
        shapes_coco_dataset(root, num_train=4, num_val=2, image_size=32)
