"""Several detection datasets read as one, e.g. PASCAL VOC07+12 (VOC2007 trainval + VOC2012 trainval).

``torch.utils.data.ConcatDataset`` joins the items but not the rest of the dataset contract
(conventions.md): ``class_names``, ``label_to_category_id``, ``image_ids``, ``load_raw`` (which
:class:`~detkit.data.mosaic.MosaicDataset` needs), ``get_target``. :class:`ConcatDetection` keeps
them, and checks that every part labels the same classes in the same order (labels are indices
into the class list, so parts that disagree would silently swap classes).

Image ids are the parts' own, concatenated; VOC's do not collide across years (``000005`` in
VOC2007, ``2008_000005`` in VOC2012). Nothing checks for duplicates: joining a dataset with
itself (to repeat it) is allowed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from .base import DetectionDataset, Transforms
from .validation import DatasetError, check_class_names

__all__ = ["ConcatDetection"]


class ConcatDetection(Dataset):
    """The items of ``datasets``, one after the other, with the dataset contract of conventions.md.

    Args:
        datasets: the parts, in order (any :class:`~detkit.data.base.DetectionDataset`, or
            anything with the same attributes); all with the same ``class_names`` in the same order.
        transforms: ``(image ndarray, target) -> (image tensor, target)`` applied to every part's
            raw item (:meth:`load_raw`); give the parts none. ``None``: each part's own
            ``__getitem__`` (with its own transforms, if any).

    Raises:
        ValueError: no parts.
        DatasetError: parts with different class lists (the message shows the difference).
    """

    def __init__(self, datasets: Sequence[DetectionDataset], transforms: Transforms | None = None) -> None:
        if not datasets:
            raise ValueError("ConcatDetection needs at least one dataset")
        self.datasets = list(datasets)
        first = self.datasets[0]
        for index, part in enumerate(self.datasets[1:], start=1):
            try:
                check_class_names(part.class_names, first.class_names)
            except DatasetError as error:
                raise DatasetError(f"ConcatDetection: part {index} ({part!r}) vs part 0 ({first!r}): {error}") from None
        self.transforms = transforms
        self.class_names: list[str] = list(first.class_names)
        self.label_to_category_id: dict[int, int] = dict(first.label_to_category_id)
        self._ends = np.cumsum([len(part) for part in self.datasets]).tolist()

    def __len__(self) -> int:
        return self._ends[-1]

    def _locate(self, index: int) -> tuple[DetectionDataset, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = bisect_right(self._ends, index)
        return self.datasets[part], index - (self._ends[part - 1] if part else 0)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int | str]:
        """The parts' image ids, in item order."""
        return [image_id for part in self.datasets for image_id in part.image_ids]

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of each image as the annotations record it."""
        return [size for part in self.datasets for size in part.image_sizes]

    def aspect_ratios(self) -> list[float]:
        """``width / height`` per image, from the annotations."""
        return [ratio for part in self.datasets for ratio in part.aspect_ratios()]

    def get_target(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without reading the image (see ``DetectionDataset.get_target``)."""
        part, local = self._locate(index)
        return part.get_target(local)

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Item ``index`` before transforms: ``([H, W, 3] uint8 RGB array, target)``."""
        part, local = self._locate(index)
        return part.load_raw(local)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        if self.transforms is None:
            part, local = self._locate(index)
            return part[local]
        image, target = self.load_raw(index)
        return self.transforms(image, target)

    def __repr__(self) -> str:
        parts = ", ".join(repr(part) for part in self.datasets)
        return f"ConcatDetection({len(self)} images, {self.num_classes} classes: {parts})"

