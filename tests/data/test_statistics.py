"""detkit.data.statistics: the numbers checked against counts made here, the problems on data built
to have each of them, and none flagged on the clean shapes data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.data.coco import CocoDetection
from detkit.data.shapes import ShapesDatasetPaths
from detkit.data.statistics import (ASPECT_RATIO_EDGES, BOX_SIZE_EDGES, compute_statistics, dataset_statistics,
                                    file_digest, histogram)
from detkit.data.voc import VOCDetection

CLASSES = ["cat", "dog", "empty_class", "bird"]


def _image(path: Path, seed: int, size: tuple[int, int] = (60, 80)) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def build_faulty_coco(root: Path) -> tuple[Path, Path]:
    """A COCO dataset with one of each problem; ``(image_dir, annotation_file)``.

    Images 60x80 (HxW): a.png holds a tiny box (2 px wide), a box reaching past the right border
    and a degenerate box (width 0); b.png is a byte copy of a.png; c.png is listed twice (ids 3
    and 4); d.png has no objects; class "empty_class" has no objects.
    """
    images = root / "images"
    images.mkdir(parents=True)
    _image(images / "a.png", 1)
    shutil.copyfile(images / "a.png", images / "b.png")
    _image(images / "c.png", 2)
    _image(images / "d.png", 3)
    records = [{"id": i, "file_name": name, "height": 60, "width": 80}
               for i, name in enumerate(["a.png", "b.png", "c.png", "c.png", "d.png"], start=1)]
    boxes = [  # (image id, category id, xywh)
        (1, 1, [10, 10, 20, 20]), (1, 1, [5, 5, 2, 10]), (1, 2, [70, 20, 30, 10]), (1, 4, [40, 40, 0, 10]),
        (2, 1, [10, 10, 20, 20]), (3, 2, [0, 0, 30, 15]), (4, 2, [0, 0, 30, 15]), (4, 4, [20, 20, 10, 40]),
    ]
    annotations = [{"id": k, "image_id": image_id, "category_id": category, "bbox": box, "iscrowd": 0,
                    "area": box[2] * box[3]} for k, (image_id, category, box) in enumerate(boxes, start=1)]
    categories = [{"id": i, "name": name} for i, name in enumerate(CLASSES, start=1)]
    annotation_file = root / "annotations.json"
    annotation_file.write_text(json.dumps({"images": records, "annotations": annotations,
                                           "categories": categories}))
    return images, annotation_file


def _problems(stats) -> dict:
    return {problem.kind: problem for problem in stats.problems}


def test_each_built_problem_is_found_with_its_count_and_files(tmp_path: Path) -> None:
    image_dir, annotation_file = build_faulty_coco(tmp_path)
    stats = dataset_statistics(CocoDetection(image_dir, annotation_file), tiny_box_size=4)
    found = _problems(stats)
    assert found["empty_classes"].count == 1 and found["empty_classes"].examples == ["2: empty_class"]
    assert found["tiny_boxes"].count == 1 and found["tiny_boxes"].examples[0].startswith("a.png: box 1 cat")
    assert found["boxes_outside_image"].count == 1 and "a.png" in found["boxes_outside_image"].examples[0]
    assert found["degenerate_boxes"].count == 1 and "a.png" in found["degenerate_boxes"].examples[0]
    assert found["duplicate_images"].count == 1 and found["duplicate_images"].examples == ["a.png = b.png"]
    assert found["same_file_listed_twice"].count == 1
    assert found["same_file_listed_twice"].examples == ["c.png listed 2 times (images 2, 3)"]
    assert found["images_without_objects"].count == 1 and found["images_without_objects"].examples == ["d.png"]
    assert found["images_without_objects"].severity == "info"
    # at the border: the box clipped to x2 = 80, c.png's corner box (listed twice), the bird to y2 = 60
    assert found["boxes_at_border"].count == 4 and found["boxes_at_border"].severity == "info"
    assert {p.kind for p in stats.warnings()} == {"empty_classes", "tiny_boxes", "boxes_outside_image",
                                                  "degenerate_boxes", "duplicate_images", "same_file_listed_twice"}
    assert all(p.advice for p in stats.problems)
    # the tiny-box size is configurable: under 12 px on a side are the 2x10, the clipped 10x10 and the 10x40
    assert _problems(dataset_statistics(CocoDetection(image_dir, annotation_file), tiny_box_size=12)
                     )["tiny_boxes"].count == 3


def test_counts_sizes_and_ratios_match_a_count_made_here(tmp_path: Path) -> None:
    image_dir, annotation_file = build_faulty_coco(tmp_path)
    dataset = CocoDetection(image_dir, annotation_file)
    stats = dataset_statistics(dataset)
    # kept boxes (the degenerate one dropped, the clipped one is [70, 20, 80, 30]):
    kept = {1: [(1, [10, 10, 20, 20]), (1, [5, 5, 2, 10]), (2, [70, 20, 10, 10])], 2: [(1, [10, 10, 20, 20])],
            3: [(2, [0, 0, 30, 15])], 4: [(2, [0, 0, 30, 15]), (4, [20, 20, 10, 40])], 5: []}
    assert stats.num_images == 5 and stats.num_objects == 7
    assert stats.objects_per_class == [3, 3, 0, 1]  # cat, dog, empty_class, bird
    assert stats.images_per_class == [2, 3, 0, 1]
    assert stats.boxes_per_image == [3, 1, 1, 2, 0]
    xywh = [box for image in kept.values() for _, box in image]
    expected_sizes = sorted(math.sqrt(w * h) for _, _, w, h in xywh)
    np.testing.assert_allclose(np.sort(stats.box_sizes), expected_sizes, rtol=1e-6)
    np.testing.assert_allclose(np.sort(stats.aspect_ratios), sorted(w / h for _, _, w, h in xywh), rtol=1e-6)
    assert stats.size_counts == {"small": 7, "medium": 0, "large": 0}
    assert stats.boxes_per_image_histogram().counts == [1, 2, 1, 1]  # 0, 1, 2, 3 boxes
    data = json.loads(json.dumps(stats.to_dict()))  # plain json values
    assert data["classes"][1] == {"label": 1, "name": "dog", "objects": 3, "images": 3}
    assert data["box_size_px"]["coco_size_classes"]["small"] == 7


def test_histogram_bins_and_coco_size_limits() -> None:
    sizes = np.array([3.9, 4.0, 31.99, 32.0, 95.9, 96.0, 600.0])
    assert histogram(sizes, BOX_SIZE_EDGES).counts == [1, 1, 0, 1, 1, 1, 1, 0, 0, 1]
    stats = compute_statistics([{"boxes": np.array([[0, 0, s, s] for s in sizes]) + 1,
                                 "labels": np.zeros(len(sizes), np.int64)}], ["a"], [(1000, 1000)],
                               file_names=["x.png"], hash_images=False)
    assert stats.size_counts == {"small": 3, "medium": 2, "large": 2}
    ratios = histogram(np.array([0.1, 0.9, 1.0, 1.1, 10.0]), ASPECT_RATIO_EDGES)
    assert ratios.counts[0] == 1 and ratios.counts[6] == 3 and ratios.counts[-1] == 1
    assert ratios.labels()[6] == "0.8-1.25" and ratios.labels()[-1] == ">=8"


def test_a_label_outside_the_class_list_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"x\.png: label 3 is outside \[0, 2\)"):
        compute_statistics([{"boxes": np.zeros((1, 4)), "labels": np.array([3])}], ["a", "b"], [(10, 10)],
                           file_names=["x.png"])


def test_clean_shapes_data_flags_nothing(shapes: ShapesDatasetPaths) -> None:
    coco = dataset_statistics(CocoDetection(shapes.image_dir, shapes.coco_json("train")))
    voc = dataset_statistics(VOCDetection(shapes.root, "train", image_suffix=".png",
                                          class_names=shapes.class_names))
    assert coco.warnings() == [] and voc.warnings() == []
    # the same boxes through both readers
    assert coco.objects_per_class == voc.objects_per_class and coco.boxes_per_image == voc.boxes_per_image
    np.testing.assert_allclose(coco.box_sizes, voc.box_sizes, rtol=1e-6)
    document = json.loads(shapes.coco_json("train").read_text())
    assert coco.num_objects == len(document["annotations"])
    for label in range(3):
        assert coco.objects_per_class[label] == sum(a["category_id"] == label + 1 for a in document["annotations"])


def test_file_digest_is_the_sha1_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert file_digest(path, chunk_size=1000) == hashlib.sha1(b"x" * 3_000_000).hexdigest()
