"""Augmentation pipelines: boxes, labels and masks stay aligned; empty targets survive; output format."""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch

from data_testing import mask_boxes, nonempty_masks
from detkit.data import (
    CocoDetection,
    DetectionTransform,
    MinIoURandomCrop,
    MixupDataset,
    MosaicDataset,
    ZoomOut,
    rcnn_test_transforms,
    rcnn_train_transforms,
    ssd_test_transforms,
    ssd_train_transforms,
    yolo_test_transforms,
    yolo_train_transforms,
)
from detkit.data.shapes import ShapesDatasetPaths

PIPELINES = {
    "rcnn_train": lambda: rcnn_train_transforms(photometric=True, short_edge_lengths=(64, 80), max_size=150, seed=0),
    "rcnn_test": rcnn_test_transforms,
    "ssd_train": lambda: ssd_train_transforms(96, seed=0),
    "ssd_test": lambda: ssd_test_transforms(96),
    "yolo_train": lambda: yolo_train_transforms(96, seed=0),
    "yolo_test": lambda: yolo_test_transforms(96),
}


def _raw(shapes: ShapesDatasetPaths) -> CocoDetection:
    return CocoDetection(shapes.image_dir, shapes.coco_json("train"), with_masks=True)


def _check_output(image: torch.Tensor, target: dict[str, Any]) -> None:
    assert image.dtype == torch.float32 and image.dim() == 3 and image.shape[0] == 3
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    n = len(target["boxes"])
    assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (n,) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (n, *image.shape[1:]) and target["masks"].dtype == torch.uint8
    assert len(target["iscrowd"]) == n
    boxes = target["boxes"]
    if n:
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()


def _assert_masks_inside_boxes(target: dict[str, Any], tolerance: float) -> None:
    """Each object's mask lies in its own box (a misaligned mask would lie elsewhere)."""
    masks = target["masks"]
    nonempty = nonempty_masks(masks)
    assert nonempty.float().mean() >= 0.8  # almost every kept object still has visible pixels
    inner = mask_boxes(masks[nonempty])
    outer = target["boxes"][nonempty]
    assert (inner[:, :2] >= outer[:, :2] - tolerance).all() and (inner[:, 2:] <= outer[:, 2:] + tolerance).all()


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_output_format_and_alignment(shapes: ShapesDatasetPaths, name: str) -> None:
    dataset = _raw(shapes)
    transform = PIPELINES[name]()
    for index in range(len(dataset)):
        image, target = transform(*dataset.load_raw(index))
        _check_output(image, target)
        # Resizing with nearest-neighbour masks moves edges by up to a source pixel.
        _assert_masks_inside_boxes(target, tolerance=2.0)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_empty_target_survives_every_pipeline(shapes: ShapesDatasetPaths, name: str) -> None:
    image, target = _raw(shapes).load_raw(0)
    empty = dict(target, boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))
    empty.update(iscrowd=torch.zeros(0, dtype=torch.int64), masks=torch.zeros(0, *image.shape[:2], dtype=torch.uint8))
    out_image, out = PIPELINES[name]()(image, empty)
    _check_output(out_image, out)
    assert len(out["boxes"]) == 0


def test_flip_moves_boxes_with_masks_exactly(shapes: ShapesDatasetPaths) -> None:
    dataset = _raw(shapes)
    flip = rcnn_train_transforms(flip_prob=1.0)
    for index in range(len(dataset)):
        raw_image, raw_target = dataset.load_raw(index)
        image, target = flip(raw_image, raw_target)
        torch.testing.assert_close(target["boxes"], mask_boxes(target["masks"]), rtol=0, atol=1e-4)
        width = raw_image.shape[1]
        torch.testing.assert_close(target["boxes"][:, 0], width - raw_target["boxes"][:, 2])
        assert torch.equal(target["masks"], raw_target["masks"].flip(-1))
        assert torch.equal(target["labels"], raw_target["labels"])


def test_zoom_out_and_crop_keep_every_field_aligned(shapes: ShapesDatasetPaths) -> None:
    dataset = _raw(shapes)
    # A label field that identifies each object: after dropping, the survivors' ids must match
    # their own masks' boxes (recomputed exactly) and the iscrowd / labels copies.
    for seed in range(3):
        transform = DetectionTransform(
            [ZoomOut(max_ratio=2.0, p=1.0), MinIoURandomCrop(min_ious=(0.1, 0.3)), A.HorizontalFlip(p=0.5)],
            seed=seed,
        )
        for index in range(len(dataset)):
            raw_image, raw_target = dataset.load_raw(index)
            n = len(raw_target["boxes"])
            raw_target = {**raw_target, "iscrowd": torch.zeros(n, dtype=torch.int64), "object_id": torch.arange(n)}
            image, target = transform(raw_image, raw_target)
            _check_output(image, target)
            _assert_masks_inside_boxes(target, tolerance=1e-3)  # albumentations normalises boxes: float round-off
            assert torch.equal(target["labels"], raw_target["labels"][target["object_id"]])
            for mask, object_id in zip(target["masks"], target["object_id"]):  # same object's pixels
                assert np.count_nonzero(mask.numpy()) <= np.count_nonzero(raw_target["masks"][object_id].numpy())


def test_recompute_boxes_from_masks_after_crop(shapes: ShapesDatasetPaths) -> None:
    dataset = _raw(shapes)
    transform = DetectionTransform([A.Crop(20, 10, 100, 70)], recompute_boxes_from_masks=True)
    for index in range(len(dataset)):
        image, target = transform(*dataset.load_raw(index))
        assert image.shape == (3, 60, 80)
        torch.testing.assert_close(target["boxes"], mask_boxes(target["masks"]), rtol=0, atol=0)


def test_ssd_zoom_out_boxes_shift_exactly() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    target = {"boxes": torch.tensor([[2.0, 3.0, 12.0, 9.0]]), "labels": torch.tensor([1])}
    out_image, out = DetectionTransform([ZoomOut(max_ratio=3.0, p=1.0)], seed=1)(image, target)
    canvas = (out_image * 255).round().to(torch.uint8)
    # The original (black) image sits where the fill colour is not: its top-left gives the shift.
    ys, xs = torch.nonzero((canvas == 0).all(dim=0), as_tuple=True)
    left, top = int(xs.min()), int(ys.min())
    torch.testing.assert_close(out["boxes"], torch.tensor([[2.0 + left, 3.0 + top, 12.0 + left, 9.0 + top]]))


def test_mosaic_and_mixup(shapes: ShapesDatasetPaths) -> None:
    random.seed(0)
    dataset = _raw(shapes)
    mosaic = MosaicDataset(dataset, output_size=128)  # tiles keep their size (longer side 128)
    for index in range(4):
        canvas, target = mosaic.load_raw(index)
        assert canvas.shape == (256, 256, 3) and target["masks"].shape[1:] == (256, 256)
        assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"]) == len(target["iscrowd"])
        _assert_masks_inside_boxes(target, tolerance=1e-3)  # albumentations normalises boxes: float round-off
    mixup = MixupDataset(dataset, prob=1.0)
    image, target = mixup.load_raw(0)
    first = dataset.load_raw(0)[1]
    assert image.shape == (96, 128, 3) and len(target["boxes"]) >= len(first["boxes"])
    assert torch.equal(target["boxes"][: len(first["boxes"])], first["boxes"])
    torch.testing.assert_close(target["boxes"], mask_boxes(target["masks"]), rtol=0, atol=0)  # same size: no resize
    stacked = MixupDataset(mosaic, transforms=yolo_train_transforms(96, seed=0), prob=1.0)
    image, target = stacked[1]
    _check_output(image, target)
    assert image.shape == (3, 96, 96)


def test_augmentation_follows_pythons_global_seed(shapes: ShapesDatasetPaths) -> None:
    # detkit's engine (and the DataLoader, per worker) seeds Python's `random`; unseeded
    # pipelines must follow it, fixed-seed pipelines must repeat themselves.
    image, target = _raw(shapes).load_raw(0)
    transform = ssd_train_transforms(64)
    random.seed(5)
    first = transform(image, target)
    random.seed(5)
    again = transform(image, target)
    other = transform(image, target)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["boxes"], again[1]["boxes"])
    assert not torch.equal(first[0], other[0])
    fixed_a, fixed_b = ssd_train_transforms(64, seed=3), ssd_train_transforms(64, seed=3)
    assert torch.equal(fixed_a(image, target)[0], fixed_b(image, target)[0])


@pytest.mark.parametrize("name", ["rcnn_test", "ssd_test", "yolo_test"])
def test_test_pipelines_keep_every_box_and_crowd(name: str) -> None:
    image = np.zeros((100, 80, 3), np.uint8)
    target = {
        "boxes": torch.tensor([[10.0, 10.0, 10.5, 30.0], [5.0, 5.0, 50.0, 50.0]]),  # a half-pixel-wide box
        "labels": torch.tensor([0, 1]),
        "iscrowd": torch.tensor([0, 1]),
    }
    _, out = PIPELINES[name]()(image, target)
    assert out["labels"].tolist() == [0, 1] and out["iscrowd"].tolist() == [0, 1]
