"""CocoDetection: box and category conversion, crowd flags, masks, empty images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detkit.data import (
    CocoDetection,
    DatasetError,
    coco_segmentation_to_mask,
    rcnn_test_transforms,
    rcnn_train_transforms,
)
from detkit.data.image_io import write_image_rgb

from data_testing import COCO_VAL_100

# pycocotools' decoder (annToMask) trips NumPy 2's `copy=` deprecation; its results are correct.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _write_small_coco(folder: Path) -> Path:
    """Three images (one without annotations), categories with sparse unsorted ids."""
    crowd_mask = np.zeros((40, 60), dtype=np.uint8)
    crowd_mask[5:15, 10:40] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd_mask))
    data = {
        "images": [
            {"id": 10, "file_name": "a.png", "height": 40, "width": 60},
            {"id": 11, "file_name": "b.png", "height": 30, "width": 20},
            {"id": 12, "file_name": "empty.png", "height": 30, "width": 20},
        ],
        "categories": [{"id": 7, "name": "seven"}, {"id": 1, "name": "one"}, {"id": 3, "name": "three"}],
        "annotations": [
            # polygon: a 10x20 axis-aligned rectangle
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 20, 20, 10], "iscrowd": 0, "area": 200,
             "segmentation": [[10, 20, 30, 20, 30, 30, 10, 30]]},
            {"id": 2, "image_id": 10, "category_id": 1, "bbox": [10, 5, 30, 10], "iscrowd": 1, "area": 300,
             "segmentation": {"size": [40, 60], "counts": crowd_rle["counts"].decode("ascii")}},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [2.5, 3.5, 4, 5], "iscrowd": 0, "area": 20,
             "segmentation": [[2.5, 3.5, 6.5, 3.5, 6.5, 8.5, 2.5, 8.5]]},
        ],
    }  # fmt: skip
    for image in data["images"]:
        write_image_rgb(folder / image["file_name"], np.full((image["height"], image["width"], 3), 128, np.uint8))
    path = folder / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_small_json_boxes_labels_crowd_and_empty_image(tmp_path: Path) -> None:
    dataset = CocoDetection(tmp_path, _write_small_coco(tmp_path))
    # Categories sorted by id -> labels 0, 1, 2.
    assert dataset.class_names == ["one", "three", "seven"]
    assert dataset.label_to_category_id == {0: 1, 1: 3, 2: 7}
    assert dataset.image_ids == [10, 11, 12]

    image, target = dataset[0]
    assert image.shape == (3, 40, 60) and image.dtype == torch.float32
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 20.0, 30.0, 30.0], [10.0, 5.0, 40.0, 15.0]]))
    assert target["labels"].tolist() == [2, 0]
    assert target["iscrowd"].tolist() == [0, 1]  # crowd kept, flagged
    assert target["image_id"] == 10 and target["orig_size"] == (40, 60)
    torch.testing.assert_close(dataset[1][1]["boxes"], torch.tensor([[2.5, 3.5, 6.5, 8.5]]))

    _, empty = dataset[2]  # no annotations: kept, with empty targets of the right shapes
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64
    assert len(CocoDetection(tmp_path, tmp_path / "ann.json", skip_empty=True)) == 2


def test_crowd_dropped_by_training_pipeline_kept_by_test_pipeline(tmp_path: Path) -> None:
    annotation_file = _write_small_coco(tmp_path)
    train = CocoDetection(tmp_path, annotation_file, with_masks=True, transforms=rcnn_train_transforms(flip_prob=0.0))
    test = CocoDetection(tmp_path, annotation_file, with_masks=True, transforms=rcnn_test_transforms())
    _, train_target = train[0]
    _, test_target = test[0]
    assert train_target["iscrowd"].tolist() == [0] and train_target["labels"].tolist() == [2]
    assert train_target["masks"].shape == (1, 40, 60) and int(train_target["masks"][0].sum()) == 200
    assert test_target["iscrowd"].tolist() == [0, 1] and test_target["masks"].shape == (2, 40, 60)


def test_class_names_select_and_order_categories(tmp_path: Path) -> None:
    annotation_file = _write_small_coco(tmp_path)
    dataset = CocoDetection(tmp_path, annotation_file, class_names=["seven", "one"])
    assert dataset.label_to_category_id == {0: 7, 1: 1}
    assert dataset[0][1]["labels"].tolist() == [0, 1]
    assert len(dataset[1][1]["boxes"]) == 0  # its "three" annotation is skipped ...
    assert dataset.load_report.counts["annotations of classes not in class_names skipped"] == 1  # ... and counted
    with pytest.raises(DatasetError, match=r"ann\.json.*\['nine'\]"):
        CocoDetection(tmp_path, annotation_file, class_names=["one", "nine"])


def test_masks_polygon_and_rle_areas(tmp_path: Path) -> None:
    dataset = CocoDetection(tmp_path, _write_small_coco(tmp_path), with_masks=True)
    masks = dataset[0][1]["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (2, 40, 60)
    assert int(masks[0].sum()) == 200 and int(masks[0, 20:30, 10:30].sum()) == 200  # polygon
    assert int(masks[1].sum()) == 300 and int(masks[1, 5:15, 10:40].sum()) == 300  # compressed RLE


def test_real_val2014_annotations_without_pixels() -> None:
    dataset = CocoDetection("no-images-here", COCO_VAL_100, with_masks=True, check_files=False)
    coco = COCO(str(COCO_VAL_100))
    assert len(dataset) == 100 and dataset.num_classes == 80
    assert sorted(dataset.label_to_category_id) == list(range(80))
    assert list(dataset.label_to_category_id.values()) == sorted(coco.getCatIds())
    assert dataset.class_names[0] == "person"

    num_boxes = num_crowd = mask_area = 0
    recorded_area = 0.0
    for index, image_id in enumerate(dataset.image_ids):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        # Masks of ten images and of every crowd (RLE) one: decoding all takes seconds.
        check_masks = index < 10 or any(annotation["iscrowd"] for annotation in annotations)
        dataset.with_masks = check_masks
        target = dataset.get_target(index)
        assert len(target["boxes"]) == len(annotations)  # nothing dropped in this file
        for k, annotation in enumerate(annotations):
            x, y, w, h = annotation["bbox"]
            height, width = target["orig_size"]
            expected = torch.tensor([x, y, min(x + w, width), min(y + h, height)], dtype=torch.float32)
            torch.testing.assert_close(target["boxes"][k], expected, rtol=0, atol=1e-4)
            assert dataset.label_to_category_id[int(target["labels"][k])] == annotation["category_id"]
            assert int(target["iscrowd"][k]) == annotation["iscrowd"]
            # Masks equal pycocotools' own decoding, and their area is near the recorded one
            # (COCO's area is the polygon's exact area; rasterising moves small objects by ~15 %).
            if not check_masks:
                continue
            mask = target["masks"][k].numpy()
            assert np.array_equal(mask, coco.annToMask(annotation))
            area = int(np.count_nonzero(mask))
            assert abs(area - annotation["area"]) <= 0.2 * annotation["area"] + 5
            mask_area += area
            recorded_area += annotation["area"]
        num_boxes += len(annotations)
        num_crowd += int(target["iscrowd"].sum())
    assert (num_boxes, num_crowd) == (839, 9)
    assert mask_area == pytest.approx(recorded_area, rel=0.02)


def test_real_val2014_items_with_blank_images(tmp_path: Path) -> None:
    data = json.loads(COCO_VAL_100.read_text())
    for image in data["images"][:3]:
        write_image_rgb(tmp_path / image["file_name"], np.zeros((image["height"], image["width"], 3), np.uint8))
    dataset = CocoDetection(tmp_path, COCO_VAL_100, check_files=False)
    for index in range(3):
        image, target = dataset[index]
        assert image.shape[1:] == target["orig_size"]
        assert torch.equal(target["boxes"], dataset.get_target(index)["boxes"])


def test_segmentation_decoder_matches_uncompressed_rle() -> None:
    mask = np.zeros((7, 9), dtype=np.uint8)
    mask[2:5, 3:8] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    flat = mask.flatten(order="F")  # uncompressed RLE: run lengths of 0s and 1s, column-major
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    assert np.array_equal(coco_segmentation_to_mask({"size": [7, 9], "counts": counts}, 7, 9), mask)
    assert np.array_equal(coco_segmentation_to_mask(rle, 7, 9), mask)


def _rewrite(path: Path, edit) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def test_duplicate_image_ids_are_an_error_naming_file_and_ids(tmp_path: Path) -> None:
    # Two image records with id 10: they used to be merged (both got the union of the annotations).
    path = _rewrite(_write_small_coco(tmp_path),
                    lambda d: d["images"].append({"id": 10, "file_name": "b.png", "height": 30, "width": 20}))
    with pytest.raises(DatasetError, match=r"ann\.json: duplicate image ids \[10\]") as raised:
        CocoDetection(tmp_path, path)
    assert "\n" not in str(raised.value)


def test_annotations_of_missing_images_are_an_error_with_count_and_ids(tmp_path: Path) -> None:
    # Annotations 1 and 3 name images that are not in "images": they used to vanish uncounted.
    def drop_images(data: dict) -> None:
        data["images"] = [image for image in data["images"] if image["id"] == 12]
        data["annotations"][1]["image_id"] = 12

    path = _rewrite(_write_small_coco(tmp_path), drop_images)
    with pytest.raises(DatasetError, match=r"ann\.json: 2 annotations name image ids not in 'images'") as raised:
        CocoDetection(tmp_path, path)
    message = str(raised.value)
    assert "annotation 1 (image_id 10)" in message and "annotation 3 (image_id 11)" in message
    assert "annotation 2 " not in message and "\n" not in message


def test_targets_carry_the_files_area_and_bad_areas_are_named(tmp_path: Path) -> None:
    """``area`` is the annotation's (segment) area, what COCO's small / medium / large measure."""
    path = _write_small_coco(tmp_path)
    dataset = CocoDetection(tmp_path, path)
    assert dataset.get_target(0)["area"].tolist() == [200.0, 300.0]  # in annotation order
    assert dataset.get_target(0)["area"].dtype == torch.float32

    def without_area(data: dict) -> None:
        del data["annotations"][0]["area"]  # a 20x10 polygon: its segment area, as pycocotools gives

    dataset = CocoDetection(tmp_path, _rewrite(path, without_area))
    assert dataset.get_target(0)["area"].tolist() == [200.0, 300.0]
    _rewrite(path, lambda d: d["annotations"][2].update(area="big"))
    with pytest.raises(DatasetError, match=r"ann\.json: image 11 \(b\.png\): annotation 3 has area 'big'"):
        CocoDetection(tmp_path, path)
