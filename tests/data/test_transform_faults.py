"""A box that becomes NaN or infinite in a transform is an error naming the image file, the
transform and the box (albumentations on its own would drop a NaN box and clip an infinite one to
the border without a word); boxes dropped as documented (cropped away, too small) are counted."""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch

from detkit.data import DatasetError, MixupDataset, MosaicDataset
from detkit.data.transforms import DetectionTransform, MinIoURandomCrop, ZoomOut
from detkit.data.transforms.common import _CheckedCompose


class _BreakBox(A.DualTransform):
    """Sets one coordinate of box ``row`` to ``value`` (a buggy transform)."""

    def __init__(self, value: float, row: int = 0, column: int = 0, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.value, self.row, self.column = value, row, column

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        out = bboxes.copy()
        if len(out) > self.row:
            out[self.row, self.column] = self.value
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("value", "row", "column")


def _sample() -> tuple[np.ndarray, dict[str, Any]]:
    image = np.full((50, 60, 3), 100, np.uint8)
    target = {"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 20.0, 20.0]]),
              "labels": torch.tensor([0, 1]), "file_name": "/data/img_7.png"}
    return image, target


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("row", [0, 1])
def test_a_transform_that_makes_a_box_non_finite_is_named(value: float, row: int) -> None:
    transform = DetectionTransform([A.HorizontalFlip(p=1.0), _BreakBox(value, row=row, column=2)], seed=0)
    with pytest.raises(DatasetError) as caught:
        transform(*_sample())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"/data/img_7.png: transform _BreakBox made box {row} non-finite: ")
    assert ("nan" if value != value else "inf") in message
    original = [[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 20.0, 20.0]][row]
    assert message.endswith(f"(was {original})")


def test_the_faulty_transform_is_found_inside_an_ssd_pipeline() -> None:
    transform = DetectionTransform(
        [ZoomOut(p=1.0), _BreakBox(float("nan")), MinIoURandomCrop(), A.HorizontalFlip(p=0.5), A.Resize(64, 64)],
        seed=3,
    )
    with pytest.raises(DatasetError, match=r"img_7\.png: transform _BreakBox made box 0 non-finite"):
        transform(*_sample())


def test_a_non_finite_input_box_is_refused_even_without_transforms() -> None:
    image, target = _sample()
    target["boxes"][1, 3] = float("nan")
    for transform in (DetectionTransform([]), DetectionTransform([A.HorizontalFlip(p=1.0)])):
        with pytest.raises(DatasetError, match=r"img_7\.png: box 1 is not finite before the pipeline: \[5\.0, 5\.0, 20\.0, nan\]"):
            transform(image, dict(target))


def test_boxes_the_pipeline_drops_are_counted() -> None:
    transform = DetectionTransform([A.Crop(0, 0, 25, 25)], seed=0)  # box 1 survives, box 0 clipped
    _, target = transform(*_sample())
    assert len(target["boxes"]) == 2 and not transform.drop_report.counts
    transform = DetectionTransform([A.Crop(40, 0, 60, 50)], seed=0)  # x in [40, 60): both boxes gone
    _, target = transform(*_sample())
    assert len(target["boxes"]) == 0
    counts = dict(transform.drop_report.counts)
    assert list(counts.values()) == [2]
    assert "img_7.png: boxes [0, 1]" in transform.drop_report.summary()


def test_the_compose_hook_sees_every_transform() -> None:
    """The check rides on albumentations' per-transform hook; this pins that it is called."""
    seen: list[str] = []

    class Spy(_CheckedCompose):
        def _track_transform_params(self, transform: Any, data: dict[str, Any]) -> None:
            seen.append(type(transform).__name__)
            super()._track_transform_params(transform, data)

    compose = Spy([A.HorizontalFlip(p=1.0), A.Resize(8, 8)],
                  bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_indices"]))
    compose(image=np.zeros((10, 10, 3), np.uint8), bboxes=np.array([[1.0, 1.0, 5.0, 5.0]]), box_indices=np.array([0]))
    assert seen == ["HorizontalFlip", "Resize"]


class _RawImages:
    """A raw dataset (``load_raw``) whose item 1 carries a NaN box, as a faulty reader would."""

    def __len__(self) -> int:
        return 2

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0]])
        if index == 1:
            boxes[0, 0] = float("nan")
        return np.full((32, 32, 3), 50, np.uint8), {"boxes": boxes, "labels": torch.tensor([0]),
                                                     "file_name": f"/data/raw_{index}.png"}


def test_mosaic_names_the_tile_whose_box_is_not_finite(monkeypatch: pytest.MonkeyPatch) -> None:
    mosaic = MosaicDataset(_RawImages(), output_size=32)
    monkeypatch.setattr("random.randrange", lambda n: 1)  # the other three tiles are item 1
    with pytest.raises(DatasetError, match=r"^/data/raw_1\.png: box 0 is not finite after MosaicDataset \(tile 1\)"):
        mosaic.load_raw(0)


def test_mixup_names_the_other_image_whose_box_is_not_finite(monkeypatch: pytest.MonkeyPatch) -> None:
    mixup = MixupDataset(_RawImages(), prob=1.0)
    monkeypatch.setattr("random.randrange", lambda n: 1)
    with pytest.raises(DatasetError, match=r"^/data/raw_1\.png: box 0 is not finite after MixupDataset"):
        mixup.load_raw(0)


def test_mosaic_counts_the_boxes_it_cuts_away(monkeypatch: pytest.MonkeyPatch) -> None:
    class Clean(_RawImages):
        def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
            image, target = super().load_raw(0)
            return image, dict(target, boxes=torch.tensor([[4.0, 4.0, 10.0, 10.0]]), file_name="/data/clean.png")

    mosaic = MosaicDataset(Clean(), output_size=32, min_box_size=2.0)
    monkeypatch.setattr("random.randrange", lambda n: 0)
    monkeypatch.setattr("random.uniform", lambda a, b: 17.0)  # the centre at (17, 17)
    monkeypatch.setattr("random.random", lambda: 0.0)
    _, target = mosaic.load_raw(0)
    # Tiles of 32 x 32 meet at (17, 17): the top-left, top-right and bottom-left tiles show only
    # their far quarter, which misses the box [4, 4, 10, 10]; the bottom-right one keeps it.
    assert target["boxes"].tolist() == [[21.0, 21.0, 27.0, 27.0]]
    assert mosaic.drop_report.counts["degenerate boxes dropped"] == 3
    assert "MosaicDataset of /data/clean.png" in mosaic.drop_report.summary()
