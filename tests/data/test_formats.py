"""detkit.data.formats: COCO json <-> VOC xml <-> YOLO txt keep boxes, class names and their order.

Rounding stated once: boxes in whole pixels (the shapes data) come back exactly equal; sub-pixel
boxes come back within ``TOL_PX`` = 1e-3 px through YOLO (which writes normalised coordinates with
``YOLO_DIGITS`` = 8 significant digits) and exactly through COCO and VOC (each number is the
shortest decimal that reads back as the same float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detkit.data import CocoDetection, VOCDetection, YOLODetection
from detkit.data.formats import (
    YOLO_DIGITS,
    convert_dataset,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_voc,
    write_yolo,
)
from detkit.data.shapes import ShapesDatasetPaths
from detkit.utils.image_io import write_image_rgb

TOL_PX = 1e-3  # sub-pixel boxes through YOLO's normalised text, in pixels


def targets_by_stem(dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``stem -> (boxes [N, 4], labels [N])`` of every image of a detkit dataset."""
    out = {}
    for index in range(len(dataset)):
        target = dataset.get_target(index)
        out[Path(target["file_name"]).stem] = (target["boxes"].numpy(), target["labels"].numpy())
    return out


def write_sub_pixel_coco(root: Path) -> Path:
    """Two images of odd sizes, sub-pixel boxes, sparse category ids 3 and 7 (names not sorted)."""
    sizes = {"odd_a.png": (97, 131), "odd_b.png": (61, 45)}
    (root / "images").mkdir(parents=True)
    for name, (height, width) in sizes.items():
        write_image_rgb(root / "images" / name, np.full((height, width, 3), 90, np.uint8))
    boxes = {1: [[10.3, 5.0, 5.1, 2.25], [0.5, 0.25, 100.7, 60.13]], 2: [[1.1, 2.2, 3.3, 4.4], [30, 40, 14.999, 20.5]]}
    document = {
        "images": [{"id": 1, "file_name": "odd_a.png", "height": 97, "width": 131},
                   {"id": 2, "file_name": "odd_b.png", "height": 61, "width": 45}],
        "annotations": [{"id": 10 * image_id + k, "image_id": image_id, "category_id": (7, 3)[k], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0}
                        for image_id, image_boxes in boxes.items() for k, box in enumerate(image_boxes)],
        "categories": [{"id": 7, "name": "zebra"}, {"id": 3, "name": "apple"}],
    }
    path = root / "instances_train.json"
    path.write_text(json.dumps(document))
    return path


def test_coco_yolo_voc_coco_round_trip_keeps_whole_pixel_boxes_exactly(shapes: ShapesDatasetPaths,
                                                                       tmp_path: Path) -> None:
    convert_dataset("coco", shapes.coco_json("train"), "yolo", tmp_path / "yolo")
    convert_dataset("yolo", tmp_path / "yolo", "voc", tmp_path / "voc")
    convert_dataset("voc", tmp_path / "voc", "coco", tmp_path / "coco")
    original, final = read_coco(shapes.coco_json("train")), read_coco(tmp_path / "coco")
    assert final.class_names == original.class_names == list(shapes.class_names)
    assert [image.file_name for image in final.images] == [image.file_name for image in original.images]
    assert sum(image.num_boxes for image in original.images) > 8
    for ours, theirs in zip(final.images, original.images):
        np.testing.assert_array_equal(ours.boxes, theirs.boxes)  # whole pixels: exact
        np.testing.assert_array_equal(ours.labels, theirs.labels)
        assert (ours.width, ours.height) == (theirs.width, theirs.height) == (128, 96)
    # The json says the same as the generator's, box for box (xywh integers).
    written = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    source = json.loads(shapes.coco_json("train").read_text())
    assert [a["bbox"] for a in written["annotations"]] == [a["bbox"] for a in source["annotations"]]
    assert written["categories"] == [{**c, "supercategory": ""} for c in source["categories"]]


def test_sub_pixel_boxes_survive_coco_yolo_voc_coco_within_the_stated_rounding(tmp_path: Path) -> None:
    json_path = write_sub_pixel_coco(tmp_path / "src")
    original = read_coco(json_path)
    assert original.class_names == ["apple", "zebra"]  # sorted by category id (3, 7)
    convert_dataset("coco", json_path, "yolo", tmp_path / "yolo")
    label_line = (tmp_path / "yolo" / "labels" / "train" / "odd_a.txt").read_text().splitlines()[0]
    assert all(len(value.replace("0.", "").lstrip("0")) <= YOLO_DIGITS for value in label_line.split()[1:])
    convert_dataset("yolo", tmp_path / "yolo", "voc", tmp_path / "voc")
    convert_dataset("voc", tmp_path / "voc", "coco", tmp_path / "coco")
    final = read_coco(tmp_path / "coco")
    assert final.class_names == original.class_names
    for ours, theirs in zip(final.images, original.images):
        assert np.abs(ours.boxes - theirs.boxes).max() <= TOL_PX
        np.testing.assert_array_equal(ours.labels, theirs.labels)
    # 44.999 is no float32 noise: the YOLO reader's whole-pixel snap leaves it alone.
    assert final.images[1].boxes[1, 2] != 45 and abs(final.images[1].boxes[1, 2] - 44.999) < 1e-4


def test_coco_to_coco_writes_the_numbers_it_read(tmp_path: Path) -> None:
    json_path = write_sub_pixel_coco(tmp_path / "src")
    convert_dataset("coco", json_path, "coco", tmp_path / "out")
    source = json.loads(json_path.read_text())
    written = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    # Same boxes, same digits ([10.3, 5, 5.1, 2.25], not 10.300000190734863), in image order.
    by_image = {image["id"]: [a["bbox"] for a in source["annotations"] if a["image_id"] == image["id"]]
                for image in source["images"]}
    assert [a["bbox"] for a in written["annotations"]] == [box for boxes in by_image.values() for box in boxes]
    assert [image["id"] for image in written["images"]] == [1, 2]  # the source's image ids
    assert {c["id"]: c["name"] for c in written["categories"]} == {3: "apple", 7: "zebra"}
    assert [a["category_id"] for a in written["annotations"]] == [7, 3, 7, 3]
    assert (tmp_path / "out" / "train" / "odd_a.png").read_bytes() == (tmp_path / "src/images/odd_a.png").read_bytes()


def test_voc_to_coco_to_voc_is_the_identity(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    convert_dataset("voc", shapes.root, "coco", tmp_path / "coco", split="val")
    convert_dataset("coco", tmp_path / "coco" / "annotations" / "instances_val.json", "voc", tmp_path / "voc")
    names = list(shapes.class_names)
    before = VOCDetection(shapes.root, "val", image_suffix=".png", class_names=names)
    after = VOCDetection(tmp_path / "voc", "val", image_suffix=".png", class_names=names)
    assert after.image_ids == before.image_ids
    for index in range(len(before)):
        ours, theirs = after.get_target(index), before.get_target(index)
        for key in ("boxes", "labels", "difficult"):
            assert ours[key].tolist() == theirs[key].tolist(), key
    for stem in before.image_ids:  # the bndbox numbers are the generator's, digit for digit
        def bndboxes(path: Path) -> list[str]:
            return [line.strip() for line in path.read_text().splitlines() if line.strip().startswith(("<xm", "<ym"))]
        assert bndboxes(tmp_path / "voc" / "Annotations" / f"{stem}.xml") == \
            bndboxes(shapes.root / "Annotations" / f"{stem}.xml")
    assert (tmp_path / "voc" / "classes.txt").read_text().split() == names
    assert read_voc(tmp_path / "voc", "val").class_names == names  # classes.txt read back


def test_detkit_readers_give_the_same_targets_from_every_written_format(shapes: ShapesDatasetPaths,
                                                                        tmp_path: Path) -> None:
    source = read_coco(shapes.coco_json("train"))
    write_coco(source, tmp_path / "coco", "train")
    write_voc(source, tmp_path / "voc", "train")
    write_yolo(source, tmp_path / "yolo", "train")
    names = list(shapes.class_names)
    expected = targets_by_stem(CocoDetection(shapes.image_dir, shapes.coco_json("train")))
    readers = {
        "coco": CocoDetection(tmp_path / "coco" / "train", tmp_path / "coco" / "annotations" / "instances_train.json"),
        "voc": VOCDetection(tmp_path / "voc", "train", image_suffix=".png", class_names=names),
        "yolo": YOLODetection(tmp_path / "yolo" / "images" / "train", names),
    }
    for name, dataset in readers.items():
        assert dataset.class_names == names, name
        got = targets_by_stem(dataset)
        assert sorted(got) == sorted(expected), name
        for stem, (boxes, labels) in expected.items():
            np.testing.assert_allclose(got[stem][0], boxes, atol=1e-4, rtol=0, err_msg=f"{name} {stem}")
            np.testing.assert_array_equal(got[stem][1], labels, err_msg=f"{name} {stem}")
        image, _ = dataset[0]  # the images were copied and decode
        assert tuple(image.shape) == (3, 96, 128)


def test_the_yolo_reader_takes_float32_noise_as_whole_pixels(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    write_yolo(read_coco(shapes.coco_json("train")), tmp_path / "yolo", "train")
    raw = YOLODetection(tmp_path / "yolo" / "images" / "train", list(shapes.class_names))
    noisy = [record.boxes for record in raw.records if not np.array_equal(record.boxes, np.rint(record.boxes))]
    assert noisy, "expected some float32 noise from normalised coordinates on a 96 x 128 image"
    for image in read_yolo(tmp_path / "yolo").images:
        np.testing.assert_array_equal(image.boxes, np.rint(image.boxes))


def test_link_images_makes_symlinks_to_the_sources(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    convert_dataset("coco", shapes.coco_json("val"), "yolo", tmp_path / "yolo", images="link")
    linked = sorted((tmp_path / "yolo" / "images" / "val").iterdir())
    assert len(linked) == 4 and all(path.is_symlink() for path in linked)
    assert linked[0].resolve() == (shapes.image_dir / linked[0].name).resolve()


def test_splits_share_a_destination_and_data_yaml_lists_them(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    for split in ("train", "val"):
        convert_dataset("voc", shapes.root, "yolo", tmp_path / "yolo", split=split)
    data_yaml = (tmp_path / "yolo" / "data.yaml").read_text()
    assert 'train: "images/train"' in data_yaml and 'val: "images/val"' in data_yaml
    assert read_yolo(tmp_path / "yolo", "val").class_names == list(shapes.class_names)  # from classes.txt
    assert len(read_yolo(tmp_path / "yolo", "val").images) == 4
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(data_yaml)["names"] == dict(enumerate(shapes.class_names))


def test_coco_class_names_in_another_order_keep_that_order_through_coco(tmp_path: Path) -> None:
    json_path = write_sub_pixel_coco(tmp_path / "src")
    convert_dataset("coco", json_path, "coco", tmp_path / "out", class_names=["zebra", "apple"])
    written = read_coco(tmp_path / "out")  # no class_names: the categories sorted by id
    assert written.class_names == ["zebra", "apple"]
    assert written.category_ids == [1, 2]  # renumbered: the source's 7, 3 would sort back to apple, zebra
    assert [image.labels.tolist() for image in written.images] == [[0, 1], [0, 1]]
