"""The dataset base class that COCO, VOC, YOLO-txt and the shapes reader share.

A reader parses its annotation format into :class:`ImageRecord` s (boxes already converted to
detkit's xyxy absolute pixels, labels to contiguous 0-based ids) and hands them to
:class:`DetectionDataset`, which runs the shared load-time checks (missing files, clipping and
dropping boxes: :mod:`detkit.data.validation`), logs the report once, and implements the dataset
contract of conventions.md::

    dataset[i] -> (image [3, H, W] float32 RGB in [0, 1], target dict)

Targets hold ``boxes [N, 4]`` float32 xyxy pixels, ``labels [N]`` int64, ``image_id`` (int for
COCO and shapes; the file stem ``str`` for VOC and YOLO, whose ids are names like ``2008_000123``),
``file_name`` (str path), ``orig_size (H, W)``, and the reader's per-box fields: ``iscrowd [N]``
int64 (COCO), ``difficult [N]`` bool (VOC), ``masks [N, H, W]`` uint8 (COCO with ``with_masks``).

Transforms take the decoded image and the target and return the model's input:
``transforms(image [H, W, 3] uint8 RGB ndarray, target) -> (image [3, H', W'] float tensor, target)``
(see :mod:`detkit.data.transforms`); without transforms the image is only converted to a tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from detkit.utils.image_io import image_to_tensor, read_image_rgb

from .records import ImageRecord, RecordStore
from .validation import (
    DatasetError,
    DatasetReport,
    check_image_files,
    sanitize_boxes,
    verify_image_headers,
)

__all__ = ["DetectionDataset", "ImageRecord", "Transforms"]

Transforms = Callable[[np.ndarray, dict[str, Any]], tuple[Tensor, dict[str, Any]]]


class DetectionDataset(Dataset):
    """Shared behaviour of detkit's datasets (see the module docstring for the item format).

    Subclasses parse their annotations into records and call ``super().__init__``.

    Args:
        records: one :class:`ImageRecord` per image, boxes in xyxy pixels, or a
            :class:`~detkit.data.records.RecordStore` of them (a reader that builds the columns
            itself, e.g. COCO's). Either way ``self.records`` becomes a ``RecordStore``: flat
            buffers that DataLoader workers share without copying (a list only for records too
            irregular for columns).
        class_names: names of labels ``0 .. C-1``.
        source: the annotation file or folder, named in messages and in the report.
        transforms: ``(image ndarray, target) -> (image tensor, target)``, or ``None``.
        label_to_category_id: contiguous label -> the format's own category id (COCO), for
            writing results; identity when ``None``.
        check_files: check that every image file exists now (turn off for annotation-only use:
            :meth:`get_target` still works).
        verify_images: also read every image header now, to catch corrupt files and sizes that
            disagree with the annotations before training starts.
        skip_empty: leave out images with no box left after the checks (default: keep them
            with empty targets; background-only images are valid training and evaluation data).
        report: a report already holding the reader's own counts.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        source: str,
        *,
        transforms: Transforms | None = None,
        label_to_category_id: dict[int, int] | None = None,
        check_files: bool = True,
        verify_images: bool = False,
        skip_empty: bool = False,
        report: DatasetReport | None = None,
    ) -> None:
        self.source = source
        self.class_names: list[str] = list(class_names)
        self.transforms = transforms
        self.label_to_category_id: dict[int, int] = (
            dict(label_to_category_id)
            if label_to_category_id is not None
            else {label: label for label in range(len(self.class_names))}
        )
        self.load_report = report if report is not None else DatasetReport(source)
        store = records if isinstance(records, RecordStore) else None
        if store is None:
            for record in records:
                boxes, keep = sanitize_boxes(record.boxes, record.size, record.where or source, self.load_report)
                record.boxes = boxes
                record.select(keep)
                if record.labels.size and (record.labels.min() < 0 or record.labels.max() >= len(self.class_names)):
                    raise DatasetError(f"{record.where}: label out of range [0, {len(self.class_names)})")
            # flat buffers that DataLoader workers share without copying (detkit.data.records);
            # records too irregular for columns stay a list
            store = RecordStore.from_records(records)
        else:
            store = _sanitize_store(store, source, len(self.class_names), self.load_report)
        self.records: Sequence[ImageRecord] = store if store is not None else list(records)
        if skip_empty:
            counts = self._box_counts()
            kept = np.flatnonzero(counts > 0)
            self.load_report.add("images without boxes skipped (skip_empty)", source, len(self.records) - len(kept))
            self.records = (self.records.take(kept) if isinstance(self.records, RecordStore)
                            else [self.records[i] for i in kept])
        if check_files:
            check_image_files(self._paths(), source)
        if verify_images:
            verify_image_headers(list(self._paths()), self.image_sizes, source)
        self.load_report.num_images = len(self.records)
        self.load_report.num_boxes = int(self._box_counts().sum())
        self.load_report.log()

    def _box_counts(self) -> np.ndarray:
        if isinstance(self.records, RecordStore):
            return self.records.box_counts()
        return np.asarray([len(record.boxes) for record in self.records], dtype=np.int64)

    def _paths(self) -> Iterator[Path]:
        if isinstance(self.records, RecordStore) and not self.records._overrides:
            return (Path(self.records.paths[i]) for i in range(len(self.records)))
        return (record.path for record in self.records)

    # ----------------------------------------------------------------------------------------
    # metadata, available without reading pixels

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int | str]:
        """The dataset's image ids, in item order."""
        if isinstance(self.records, RecordStore):
            return self.records.image_ids()
        return [record.image_id for record in self.records]

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of each image as the annotations record it."""
        if isinstance(self.records, RecordStore):
            return self.records.image_sizes()
        return [record.size for record in self.records]

    def aspect_ratios(self) -> list[float]:
        """``width / height`` per image (for aspect-ratio grouping), from the annotations."""
        return [width / height for height, width in self.image_sizes]

    def get_target(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` at the recorded image size, without reading the image
        (for evaluation ground truth, statistics, or annotation-only datasets)."""
        record = self.records[index]
        return self._make_target(record, record.size)

    # ----------------------------------------------------------------------------------------
    # items

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Item ``index`` before transforms: ``([H, W, 3] uint8 RGB array, target)``.

        Raises:
            ImageReadError: the image is missing or cannot be decoded (names the file).
            DatasetError: the decoded size differs from the size in the annotations.
        """
        record = self.records[index]
        image = read_image_rgb(record.path)
        size = (int(image.shape[0]), int(image.shape[1]))
        if size != tuple(record.size):
            raise DatasetError(
                f"{record.where or self.source}: image {record.path} decodes to {size[1]}x{size[0]} (WxH) but "
                f"the annotations say {record.size[1]}x{record.size[0]}"
            )
        return image, self._make_target(record, size)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, target = self.load_raw(index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image_to_tensor(image), target

    def _make_target(self, record: ImageRecord, size: tuple[int, int]) -> dict[str, Any]:
        target: dict[str, Any] = {
            "boxes": torch.from_numpy(record.boxes.astype(np.float32).reshape(-1, 4)),
            "labels": torch.from_numpy(record.labels.astype(np.int64)),
            "image_id": record.image_id,
            "file_name": str(record.path),
            "orig_size": tuple(size),
        }
        for name, values in record.box_fields.items():
            target[name] = torch.from_numpy(np.array(values))  # a copy: the record may be a view of shared buffers
        masks = self._decode_masks(record, size)
        if masks is not None:
            target["masks"] = torch.from_numpy(masks)
        return target

    def _decode_masks(self, record: ImageRecord, size: tuple[int, int]) -> np.ndarray | None:
        """``[N, H, W]`` uint8 masks for the record's boxes, or ``None`` (readers without masks)."""
        return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source!r}, {len(self)} images, "
            f"{self.load_report.num_boxes} boxes, {self.num_classes} classes)"
        )


def _sanitize_store(store: RecordStore, source: str, num_classes: int, report: DatasetReport) -> RecordStore:
    """:func:`~detkit.data.validation.sanitize_boxes` over every record of ``store`` at once:
    the same clipping, dropping and report (counts, and the first examples in record order)."""
    counts = np.diff(store.box_offsets)
    image_of_box = np.repeat(np.arange(len(store)), counts)
    heights = store.sizes[image_of_box, 0].astype(np.float32)
    widths = store.sizes[image_of_box, 1].astype(np.float32)
    boxes = np.asarray(store.boxes, dtype=np.float32).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0.0, widths[:, None])
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0.0, heights[:, None])
    changed = finite & (clipped != boxes).any(axis=1)
    keep = finite & (clipped[:, 2] - clipped[:, 0] > 0) & (clipped[:, 3] - clipped[:, 1] > 0)

    def example(index: int) -> tuple[str, int, int, int]:
        image = int(image_of_box[index])
        height, width = store.sizes[image].tolist()
        return store.wheres[image] or source, index - int(store.box_offsets[image]), width, height

    for kind, hits in (("boxes clipped to the image", np.flatnonzero(changed & keep)),
                       ("degenerate boxes dropped", np.flatnonzero(~keep))):
        for index in hits[:5].tolist():
            where, box, width, height = example(index)
            if kind == "boxes clipped to the image":
                text = (f"{where}: box {box} {boxes[index].tolist()} -> {clipped[index].tolist()} "
                        f"(image {width}x{height})")
            else:
                text = (f"{where}: box {box} {boxes[index].tolist()} (zero, negative or non-finite size after "
                        f"clipping to {width}x{height})")
            report.add(kind, text)
        if len(hits) > 5:
            report.counts[kind] += len(hits) - 5
    labels = store.labels[keep]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(np.flatnonzero(keep)[np.flatnonzero((labels < 0) | (labels >= num_classes))[0]])
        raise DatasetError(f"{store.wheres[int(image_of_box[bad])]}: label out of range [0, {num_classes})")
    return store.select_boxes(keep, np.where(finite[:, None], clipped, 0.0).astype(np.float32))
