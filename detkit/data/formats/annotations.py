"""The neutral, in-memory form of a detection dataset that the format converters pass around.

Readers (:mod:`detkit.data.formats.readers`) turn a COCO json, a VOC folder or a YOLO txt
folder into a :class:`DetectionAnnotations`; writers (``coco_writer``, ``voc_writer``,
``yolo_writer``) turn one into files. The form holds what detkit's readers keep, in detkit's
conventions:

* ``boxes [N, 4]`` float32 xyxy in continuous pixels of the image (pixel ``i`` covers
  ``[i, i + 1)``), exactly as :class:`~detkit.data.DetectionDataset` targets hold them;
* ``labels [N]`` int64, contiguous 0-based indices into ``class_names``;
* per-box flags where the source has them: ``iscrowd [N]`` bool (COCO), ``difficult [N]`` bool
  (VOC), ``areas [N]`` float32 (COCO's ``area`` field), ``segmentations`` (``N`` raw COCO
  segmentations: polygons or RLE, ``None`` for a box without one).

Numbers are written back with :func:`format_number`: the shortest decimal that reads back as the
same float32, so a box that went in as ``12`` or ``10.3`` comes out as ``12`` or ``10.3``.

What a target format cannot hold is counted in a :class:`ConversionReport` and printed, never
dropped silently.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..validation import DatasetReport

__all__ = [
    "FORMATS",
    "ConversionError",
    "ConversionReport",
    "DetectionAnnotations",
    "ImageAnnotations",
    "check_unique_stems",
    "flat_stem",
    "format_number",
    "shortest_number",
]

FORMATS: tuple[str, ...] = ("coco", "voc", "yolo")

_MAX_EXAMPLES = 3  # examples a report line quotes


class ConversionError(ValueError):
    """A conversion that cannot be done as asked (an occupied destination, clashing file names,
    class lists that disagree); the message names the file or folder."""


@dataclass
class ImageAnnotations:
    """One image and its boxes, in detkit's conventions (see the module docstring).

    Attributes:
        file_name: the image's path relative to the dataset's image folder, posix (``a/b.jpg``).
        width: image width in pixels.
        height: image height in pixels.
        boxes: ``[N, 4]`` float32 xyxy continuous pixels.
        labels: ``[N]`` int64 0-based class indices.
        image_path: the image file on disk (copied or linked by the writers), or ``None``.
        image_id: the source's id (COCO int id, VOC / YOLO file stem), or ``None``.
        iscrowd: ``[N]`` bool crowd flags (COCO), or ``None``.
        difficult: ``[N]`` bool difficult flags (VOC), or ``None``.
        areas: ``[N]`` float32 COCO ``area`` fields, or ``None``.
        segmentations: ``N`` raw COCO segmentations (``None`` entries for boxes without), or ``None``.
    """

    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    image_path: Path | None = None
    image_id: int | str | None = None
    iscrowd: np.ndarray | None = None
    difficult: np.ndarray | None = None
    areas: np.ndarray | None = None
    segmentations: list[Any] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.boxes):
            raise ValueError(f"{self.file_name}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    def crowd_flags(self) -> np.ndarray:
        """``[N]`` bool: the crowd flags, all false where the source has none."""
        return np.zeros(self.num_boxes, bool) if self.iscrowd is None else np.asarray(self.iscrowd, bool)

    def difficult_flags(self) -> np.ndarray:
        """``[N]`` bool: the difficult flags, all false where the source has none."""
        return np.zeros(self.num_boxes, bool) if self.difficult is None else np.asarray(self.difficult, bool)

    def segmentation(self, index: int) -> Any:
        """Box ``index``'s raw segmentation, or ``None`` (no segmentation, or an empty one)."""
        if self.segmentations is None:
            return None
        value = self.segmentations[index]
        return None if value is None or (isinstance(value, list) and not value) else value


@dataclass
class DetectionAnnotations:
    """A whole split in the neutral form.

    Attributes:
        class_names: names of labels ``0 .. C-1``.
        images: one :class:`ImageAnnotations` per image, in the source's order.
        source: what was read (a file or folder), for messages.
        source_format: ``"coco"``, ``"voc"`` or ``"yolo"``.
        category_ids: COCO category id of each label (a COCO source's own ids), or ``None``
            (writers then use ``label + 1``).
        read_report: what detkit's reader fixed while reading (boxes clipped to the image,
            degenerate boxes dropped, annotations of unlisted classes skipped), or ``None``.
    """

    class_names: list[str]
    images: list[ImageAnnotations]
    source: str = ""
    source_format: str = ""
    category_ids: list[int] | None = None
    read_report: DatasetReport | None = None

    @property
    def num_boxes(self) -> int:
        return sum(image.num_boxes for image in self.images)


@dataclass
class ConversionReport:
    """What a conversion read and wrote, and what the target format could not hold.

    Attributes:
        source_format: format read.
        target_format: format written.
        source: what was read.
        target: the destination folder.
        split: the split written.
        num_images: images written.
        num_boxes: boxes written.
        num_classes: classes written.
        lost: kind -> count of what the target format cannot hold (dropped or simplified),
            e.g. ``"crowd annotations dropped (YOLO txt has no crowd flag)"``.
        examples: kind -> up to 3 examples (file and box).
        read_fixes: kind -> count of what detkit's reader fixed in the source.
        files: the annotation files written (not the images).
    """

    source_format: str
    target_format: str
    source: str
    target: str
    split: str
    num_images: int = 0
    num_boxes: int = 0
    num_classes: int = 0
    lost: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    read_fixes: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)

    @classmethod
    def start(cls, annotations: DetectionAnnotations, target_format: str, target: Path, split: str) -> ConversionReport:
        """An empty report for writing ``annotations``, with what the reader fixed in the source."""
        fixes = Counter(annotations.read_report.counts) if annotations.read_report is not None else Counter()
        return cls(annotations.source_format or "?", target_format, annotations.source, str(target), split,
                   num_classes=len(annotations.class_names), read_fixes=fixes)

    def add(self, kind: str, example: str, count: int = 1) -> None:
        """Count ``count`` items of ``kind`` the target cannot hold; keep a few examples."""
        if count <= 0:
            return
        self.lost[kind] += count
        kept = self.examples.setdefault(kind, [])
        if len(kept) < _MAX_EXAMPLES:
            kept.append(example)

    def summary(self) -> str:
        """The report as lines: totals, reader fixes, then one line per kind the target cannot hold."""
        lines = [f"converted {self.source_format} {self.source} -> {self.target_format} {self.target} "
                 f"(split {self.split}): {self.num_images} images, {self.num_boxes} boxes, "
                 f"{self.num_classes} classes"]
        for kind, count in sorted(self.read_fixes.items()):
            lines.append(f"  reading the source: {count} {kind}")
        if not self.lost:
            lines.append(f"  nothing lost: {self.target_format} holds everything that was read")
        for kind, count in sorted(self.lost.items()):
            lines.append(f"  {self.target_format} cannot hold: {count} {kind}, e.g. "
                         + "; ".join(self.examples.get(kind, [])))
        return "\n".join(lines)


def shortest_number(value: float, reads_back: Callable[[float], bool]) -> int | float:
    """The decimal with the fewest significant digits, rounded from ``value``, that ``reads_back``.

    Args:
        value: the number to write (float64).
        reads_back: whether a candidate, read by the target format's reader, gives the value
            that must come back (e.g. the same float32).

    Returns:
        The shortest candidate (an ``int`` when integral); ``value`` itself when none of up to 17
        digits reads back.
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite number {value!r}")
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if reads_back(candidate):
            return int(candidate) if candidate.is_integer() else candidate
    return int(value) if float(value).is_integer() else float(value)


def format_number(value: float) -> int | float:
    """The shortest number that reads back as the same float32: an ``int`` when integral.

    ``format_number(np.float32(10.3))`` is ``10.3`` (not ``10.300000190734863``), so a box that a
    reader stored as float32 is written with the digits it was read with.
    """
    single = np.float32(value)
    return shortest_number(float(single), lambda candidate: np.float32(candidate) == single)


def flat_stem(file_name: str) -> str:
    """The file name without suffix, sub-folders joined with ``__`` (``a/b.jpg`` -> ``a__b``), for
    formats that keep one flat folder of images named by stem (VOC, YOLO)."""
    path = PurePosixPath(file_name)
    return "__".join((*path.parent.parts, path.stem)) if path.parent.parts else path.stem


def check_unique_stems(images: Sequence[ImageAnnotations], target: str) -> list[str]:
    """The flat stems of ``images``, refusing two images that would share one.

    Raises:
        ConversionError: two images map to the same stem (both file names quoted).
    """
    stems, seen = [], {}
    for image in images:
        stem = flat_stem(image.file_name)
        if stem in seen:
            raise ConversionError(f"images {seen[stem]!r} and {image.file_name!r} would both be {stem!r} in "
                                  f"{target} (it names images by their stem); rename one")
        seen[stem] = image.file_name
        stems.append(stem)
    return stems
