"""The keypoint variant of the shapes data: corners in COCO's keypoint format, read back by
CocoDetection, flipped consistently by the training transforms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detkit.data import (
    SHAPE_CLASSES,
    SHAPE_KEYPOINT_FLIP_PAIRS,
    SHAPE_KEYPOINTS,
    generate_shapes_dataset,
    shapes_coco_dataset,
)
from detkit.data.coco import CocoDetection
from detkit.data.shapes import shape_keypoints
from detkit.data.transforms import rcnn_train_transforms
from detkit.data.validation import DatasetError

K = len(SHAPE_KEYPOINTS)


@pytest.fixture(scope="module")
def keypoint_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_keypoints")
    return generate_shapes_dataset(root, 12, 4, 128, seed=3, with_keypoints=True)


def test_corners_are_written_in_coco_keypoint_format(keypoint_data):
    document = json.loads(keypoint_data.coco_json("train").read_text())
    for category in document["categories"]:
        assert category["keypoints"] == list(SHAPE_KEYPOINTS) and len(category["keypoint_sigmas"]) == K
    skeletons = {c["name"]: c["skeleton"] for c in document["categories"]}
    assert skeletons == {"circle": [], "square": [[4, 5], [5, 6], [6, 7], [7, 4]], "triangle": [[1, 2], [2, 3], [3, 1]]}
    names = {c["id"]: c["name"] for c in document["categories"]}
    seen = set()
    for annotation in document["annotations"]:
        points = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(K, 3)
        labelled = points[:, 2] > 0
        assert annotation["num_keypoints"] == int(labelled.sum())
        assert (points[~labelled] == 0).all()  # COCO: unlabelled points are (0, 0, 0)
        name = names[annotation["category_id"]]
        seen.add(name)
        own = {"circle": [], "triangle": [0, 1, 2], "square": [3, 4, 5, 6]}[name]
        assert set(np.flatnonzero(labelled)) <= set(own)
        x, y, w, h = annotation["bbox"]
        visible = points[:, 2] == 2
        # a visible corner is a pixel of the shape, hence inside its box (pixel centres: + 0.5)
        assert ((points[visible, 0] > x) & (points[visible, 0] < x + w)).all()
        assert ((points[visible, 1] > y) & (points[visible, 1] < y + h)).all()
    assert seen == set(SHAPE_CLASSES)


def test_default_data_have_no_keypoints(tmp_path):
    paths = generate_shapes_dataset(tmp_path, 3, 1, 96, seed=3)
    document = json.loads(paths.coco_json("train").read_text())
    assert all("keypoints" not in c for c in document["categories"])
    assert all("keypoints" not in a and "num_keypoints" not in a for a in document["annotations"])


def test_keypoints_images_and_boxes_equal_the_plain_data(tmp_path, keypoint_data):
    plain = generate_shapes_dataset(tmp_path, 12, 4, 128, seed=3)
    ours = json.loads(keypoint_data.coco_json("train").read_text())["annotations"]
    theirs = json.loads(plain.coco_json("train").read_text())["annotations"]
    strip = [{k: v for k, v in a.items() if k not in ("keypoints", "num_keypoints")} for a in ours]
    assert strip == theirs
    assert (keypoint_data.image_dir / "train_000000.png").read_bytes() == (plain.image_dir / "train_000000.png").read_bytes()


def test_corners_are_numbered_clockwise_from_the_top():
    mask = np.ones((100, 100), dtype=np.uint8)
    square = np.array([[70, 50], [50, 70], [30, 50], [50, 30]])  # right, bottom, left, top
    points = shape_keypoints("square", square, mask)
    np.testing.assert_array_equal(points[3:, :2], [[50.5, 30.5], [70.5, 50.5], [50.5, 70.5], [30.5, 50.5]])
    assert (points[:3] == 0).all() and (points[3:, 2] == 2).all()
    mask[70, 50] = 0  # the bottom corner hidden by a later shape
    assert shape_keypoints("square", square, mask)[5, 2] == 1
    outside = np.array([[-5, 50], [50, 40], [60, 60]])
    triangle = shape_keypoints("triangle", outside, mask)
    assert (triangle[:, 2] > 0).sum() == 2 and (triangle[3:] == 0).all()
    assert (shape_keypoints("circle", None, mask) == 0).all()


def test_a_flip_keeps_the_numbering(keypoint_data):
    """Flipping an image and numbering its corners again gives the flipped keypoints with the
    right / left corners swapped: the numbering is a function of the image."""
    mask = np.ones((64, 64), dtype=np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(50):
        name = ["triangle", "square"][int(rng.integers(2))]
        count = 3 if name == "triangle" else 4
        angle = rng.uniform(0, 2 * np.pi)
        corner_angles = angle + np.arange(count) * 2 * np.pi / count
        corners = np.rint(32 + 20 * np.stack([np.cos(corner_angles), np.sin(corner_angles)], 1)).astype(int)
        points = shape_keypoints(name, corners, mask)
        mirrored = corners.copy()
        mirrored[:, 0] = 63 - corners[:, 0]  # pixel column c -> 63 - c: continuous x -> 64 - x
        again = shape_keypoints(name, mirrored, mask)
        flipped = points.copy()
        flipped[:, 0] = np.where(points[:, 2] > 0, 64 - points[:, 0], 0)
        order = np.arange(K)
        for left, right in SHAPE_KEYPOINT_FLIP_PAIRS:
            order[left], order[right] = right, left
        top = np.argmin(np.mod(np.arctan2(corners[:, 0] - corners[:, 0].mean(), corners[:, 1].mean() - corners[:, 1])
                               + np.pi / count, 2 * np.pi))
        top_angle = np.degrees(np.arctan2(corners[top, 0] - corners[:, 0].mean(), corners[:, 1].mean() - corners[top, 1]))
        if abs(abs(top_angle) - 180 / count) < 3:  # two corners equally near the top: either may lead
            continue
        np.testing.assert_allclose(again, flipped[order], atol=0)


def test_coco_detection_reads_keypoints(keypoint_data):
    dataset = CocoDetection(keypoint_data.image_dir, keypoint_data.coco_json("train"), with_keypoints=True)
    assert dataset.keypoint_names == list(SHAPE_KEYPOINTS)
    assert dataset.keypoint_sigmas == [0.067] * K and (0, 1) in dataset.skeleton and (6, 3) in dataset.skeleton
    _, target = dataset[0]
    assert target["keypoints"].dtype == torch.float32
    assert target["keypoints"].shape == (len(target["boxes"]), K, 3)
    plain = CocoDetection(keypoint_data.image_dir, keypoint_data.coco_json("train"))
    assert "keypoints" not in plain[0][1]


def test_coco_detection_refuses_bad_keypoints(keypoint_data, tmp_path):
    document = json.loads(keypoint_data.coco_json("train").read_text())
    document["annotations"][0]["keypoints"] = [1.0, 2.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match=r"bad.json.*annotation 1.*'keypoints' must be 21 finite numbers"):
        CocoDetection(keypoint_data.image_dir, bad, with_keypoints=True)
    plain = tmp_path / "plain.json"
    for category in document["categories"]:
        for key in ("keypoints", "keypoint_sigmas", "skeleton"):
            del category[key]
    plain.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match="with_keypoints=True but no category names keypoints"):
        CocoDetection(keypoint_data.image_dir, plain, with_keypoints=True)


def test_shapes_coco_dataset_with_keypoints_has_its_own_record(tmp_path):
    dataset = shapes_coco_dataset(tmp_path / "kp", "val", num_train=2, num_val=2, image_size=96, with_keypoints=True)
    assert dataset[0][1]["keypoints"].shape[1:] == (K, 3)
    with pytest.raises(ValueError, match="generated with"):
        shapes_coco_dataset(tmp_path / "kp", "val", num_train=2, num_val=2, image_size=96)


def test_training_flip_moves_and_swaps_the_corners(keypoint_data):
    dataset = CocoDetection(keypoint_data.image_dir, keypoint_data.coco_json("train"), with_keypoints=True)
    image, target = dataset.load_raw(0)
    width = image.shape[1]
    flip = rcnn_train_transforms(flip_prob=1.0, keypoint_flip_pairs=SHAPE_KEYPOINT_FLIP_PAIRS, seed=0)
    _, flipped = flip(image, target)
    torch.testing.assert_close(flipped["boxes"][:, 0], width - target["boxes"][:, 2])
    order = list(range(K))
    for left, right in SHAPE_KEYPOINT_FLIP_PAIRS:
        order[left], order[right] = right, left
    expected = target["keypoints"][:, order].clone()
    expected[..., 0] = width - expected[..., 0]
    labelled = expected[..., 2] > 0
    torch.testing.assert_close(flipped["keypoints"][labelled], expected[labelled])
    keep = rcnn_train_transforms(flip_prob=0.0, seed=0)  # no mirror: no pairs needed
    torch.testing.assert_close(keep(image, target)[1]["keypoints"], target["keypoints"])
    with pytest.raises(DatasetError, match="mirrored the image but has no keypoint_flip_pairs"):
        rcnn_train_transforms(flip_prob=1.0, seed=0)(image, target)


def test_multi_scale_resize_scales_keypoints(keypoint_data):
    dataset = CocoDetection(keypoint_data.image_dir, keypoint_data.coco_json("train"), with_keypoints=True)
    image, target = dataset.load_raw(0)
    resize = rcnn_train_transforms(flip_prob=0.0, short_edge_lengths=(256,), seed=0)
    _, resized = resize(image, target)
    labelled = target["keypoints"][..., 2] > 0
    torch.testing.assert_close(resized["keypoints"][..., :2][labelled], target["keypoints"][..., :2][labelled] * 2)
