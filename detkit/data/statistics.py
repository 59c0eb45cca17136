"""What a detection dataset holds, and what in it is likely wrong: numbers, no drawing.

:func:`compute_statistics` works on the targets of a dataset (``boxes [N, 4]`` xyxy pixels,
``labels [N]``, optional ``iscrowd`` / ``difficult``), the image sizes and the image files;
:func:`dataset_statistics` gathers those from a :class:`~detkit.data.base.DetectionDataset`
without decoding a pixel (``get_target``), and reads the counts its load-time checks made
(:mod:`detkit.data.validation`: boxes outside the image are clipped and degenerate boxes dropped
*when the dataset loads*, so the targets never show them; the dataset's ``load_report`` does).

Conventions:

* a box's **size** is ``sqrt(width * height)`` in pixels of the image; COCO's size classes by box
  area: small ``< 32**2``, medium ``32**2 .. 96**2``, large ``>= 96**2`` (COCO evaluation measures
  the *segment* area of instance annotations; for box-only data they agree);
* a box's **aspect ratio** is ``width / height`` (``> 1``: wide);
* crowd (``iscrowd``) and ``difficult`` objects are counted with the others and also apart;
* **duplicate images** are files with the same bytes (SHA-1) at different paths; **the same
  file listed twice** is one path (resolved) named by two images of the dataset.

Each :class:`Problem` carries a count, up to ``max_examples`` examples naming the files, and one
line of what to do; ``severity="info"`` marks what is worth knowing but often fine (images with no
objects, objects cut by the image border).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .validation import DatasetReport

__all__ = [
    "ASPECT_RATIO_EDGES",
    "BOX_SIZE_EDGES",
    "COCO_SIZE_LIMITS",
    "DatasetStatistics",
    "Histogram",
    "Problem",
    "compute_statistics",
    "dataset_statistics",
    "file_digest",
    "histogram",
]

# COCO's object size classes: sqrt(area) below 32 px is small, from 96 px large.
COCO_SIZE_LIMITS: tuple[float, float] = (32.0, 96.0)
# Histogram bin edges of box sizes (sqrt area, pixels) and aspect ratios (width / height; the
# edges below 1 are the inverses of those above, so tall and wide boxes bin alike; 0.8 .. 1.25
# is "about square"); the last bins are open-ended.
BOX_SIZE_EDGES: tuple[float, ...] = (0.0, 4.0, 8.0, 16.0, 32.0, 64.0, 96.0, 128.0, 256.0, 512.0, math.inf)
ASPECT_RATIO_EDGES: tuple[float, ...] = (0.0, 1 / 8, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1 / 1.25, 1.25, 1.5, 2.0,
                                         3.0, 4.0, 8.0, math.inf)

# The kinds that DetectionDataset's load-time checks count (detkit.data.validation.sanitize_boxes).
_CLIPPED_KIND = "boxes clipped to the image"
_DEGENERATE_KIND = "degenerate boxes dropped"


@dataclass
class Problem:
    """One kind of likely problem in a dataset.

    Attributes:
        kind: a short key (``"empty_classes"``, ``"tiny_boxes"`` ...).
        title: what it is, in words (``"classes with no objects"``).
        count: how many (classes, boxes or images, as the title says).
        examples: up to a few examples, each naming the file (and the box or class).
        advice: one line of what to do about it.
        severity: ``"warning"`` (likely wrong) or ``"info"`` (worth knowing, often fine).
    """

    kind: str
    title: str
    count: int
    examples: list[str]
    advice: str
    severity: str = "warning"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "count": self.count, "severity": self.severity,
                "examples": list(self.examples), "advice": self.advice}


@dataclass
class Histogram:
    """Counts of values in bins ``[edges[i], edges[i + 1])``.

    Attributes:
        edges: ``K + 1`` increasing bin edges (``inf`` for an open last bin).
        counts: ``K`` counts.
    """

    edges: list[float]
    counts: list[int]

    def labels(self, digits: int = 3) -> list[str]:
        """A text label per bin: ``"4-8"``, ``"<4"`` for a first bin from 0, ``">=512"`` for an open last."""
        def text(value: float) -> str:
            return f"{value:.{digits}g}"

        names = []
        for low, high in zip(self.edges[:-1], self.edges[1:]):
            if low <= 0 and len(names) == 0:
                names.append(f"<{text(high)}")
            elif math.isinf(high):
                names.append(f">={text(low)}")
            else:
                names.append(f"{text(low)}-{text(high)}")
        return names

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [None if math.isinf(e) else e for e in self.edges], "counts": list(self.counts),
                "labels": self.labels()}


def histogram(values: np.ndarray, edges: Sequence[float]) -> Histogram:
    """Count ``values`` in the bins ``[edges[i], edges[i + 1])`` (a value below ``edges[0]`` is not counted).

    Args:
        values: ``[M]`` numbers.
        edges: ``K + 1`` increasing edges; ``inf`` as the last edge makes the last bin open.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    edges = [float(e) for e in edges]
    bins = np.searchsorted(np.asarray(edges), values, side="right") - 1  # bin i: edges[i] <= v < edges[i+1]
    counts = np.bincount(bins[(bins >= 0) & (bins < len(edges) - 1)], minlength=len(edges) - 1)
    return Histogram(edges, [int(c) for c in counts])


def file_digest(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The SHA-1 of a file's bytes, as hex (read in chunks of ``chunk_size`` bytes)."""
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class DatasetStatistics:
    """The numbers of one dataset (see the module docstring for the conventions).

    Attributes:
        class_names: ``C`` names, in label order.
        num_images: images in the dataset.
        objects_per_class: ``[C]`` objects (boxes) of each class.
        images_per_class: ``[C]`` images holding at least one object of each class.
        boxes_per_image: ``[num_images]`` objects on each image.
        box_sizes: ``[M]`` ``sqrt(width * height)`` of every box, pixels.
        aspect_ratios: ``[M]`` ``width / height`` of every box.
        crowd_objects: objects flagged ``iscrowd``.
        difficult_objects: objects flagged ``difficult``.
        problems: the likely problems, in a fixed order (:class:`Problem`).
    """

    class_names: list[str]
    num_images: int
    objects_per_class: list[int]
    images_per_class: list[int]
    boxes_per_image: list[int]
    box_sizes: np.ndarray
    aspect_ratios: np.ndarray
    crowd_objects: int = 0
    difficult_objects: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def num_objects(self) -> int:
        return int(sum(self.objects_per_class))

    @property
    def size_counts(self) -> dict[str, int]:
        """Boxes per COCO size class: ``{"small": ..., "medium": ..., "large": ...}``."""
        small, large = COCO_SIZE_LIMITS
        sizes = self.box_sizes
        return {"small": int((sizes < small).sum()), "medium": int(((sizes >= small) & (sizes < large)).sum()),
                "large": int((sizes >= large).sum())}

    def box_size_histogram(self) -> Histogram:
        return histogram(self.box_sizes, BOX_SIZE_EDGES)

    def aspect_ratio_histogram(self) -> Histogram:
        return histogram(self.aspect_ratios, ASPECT_RATIO_EDGES)

    def boxes_per_image_histogram(self) -> Histogram:
        """One bin per count ``0, 1, ..., max`` (``[k, k + 1)``)."""
        top = max(self.boxes_per_image, default=0)
        return histogram(np.asarray(self.boxes_per_image), [float(k) for k in range(top + 2)])

    def warnings(self) -> list[Problem]:
        """The problems of severity ``"warning"`` with a non-zero count."""
        return [p for p in self.problems if p.severity == "warning" and p.count]

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain json values (the ``stats.json`` that ``detkit data stats`` writes)."""
        def quantiles(values: np.ndarray) -> dict[str, float] | None:
            if not len(values):
                return None
            q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
            return {name: round(float(v), 4) for name, v in zip(("min", "p25", "median", "p75", "max"), q)}

        return {
            "num_images": self.num_images,
            "num_objects": self.num_objects,
            "num_classes": len(self.class_names),
            "classes": [{"label": label, "name": name, "objects": self.objects_per_class[label],
                         "images": self.images_per_class[label]} for label, name in enumerate(self.class_names)],
            "crowd_objects": self.crowd_objects,
            "difficult_objects": self.difficult_objects,
            "boxes_per_image": {"mean": round(float(np.mean(self.boxes_per_image)), 4) if self.num_images else None,
                                "max": max(self.boxes_per_image, default=0),
                                "histogram": self.boxes_per_image_histogram().to_dict()},
            "box_size_px": {"quantiles": quantiles(self.box_sizes), "coco_size_classes": self.size_counts,
                            "histogram": self.box_size_histogram().to_dict()},
            "aspect_ratio": {"quantiles": quantiles(self.aspect_ratios),
                             "histogram": self.aspect_ratio_histogram().to_dict()},
            "problems": [problem.to_dict() for problem in self.problems],
        }


def _display_names(paths: Sequence[str]) -> list[str]:
    """Paths relative to their common folder (the file name when all share one folder)."""
    if not paths:
        return []
    try:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:  # different drives
        return list(paths)
    return [os.path.relpath(os.path.abspath(p), root) for p in paths]


def _shorten(example: str, source: str) -> str:
    """A load-report example with the annotation file's folders dropped (its name kept)."""
    return example.replace(source, os.path.basename(source), 1) if source else example


def _box_text(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):.1f}" for v in box) + "]"


def compute_statistics(
    targets: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    image_sizes: Sequence[tuple[int, int]],
    *,
    file_names: Sequence[str] | None = None,
    load_report: DatasetReport | None = None,
    tiny_box_size: float = 4.0,
    hash_images: bool = True,
    max_examples: int = 5,
) -> DatasetStatistics:
    """The statistics and likely problems of a dataset given as its targets.

    Args:
        targets: one dict per image: ``boxes [N, 4]`` xyxy pixels, ``labels [N]`` 0-based, optional
            ``iscrowd [N]`` and ``difficult [N]`` (tensors or arrays), optional ``file_name``.
        class_names: ``C`` names in label order.
        image_sizes: ``(height, width)`` of each image, pixels.
        file_names: the image file of each target (default: each target's ``file_name``).
        load_report: the dataset's load-time counts (boxes clipped to the image, degenerate boxes
            dropped); ``None`` when there is none.
        tiny_box_size: a box whose width or height is below this many pixels is tiny.
        hash_images: read every image file to find duplicates by content (else by path only).
        max_examples: examples kept per problem.

    Returns:
        The :class:`DatasetStatistics`.

    Raises:
        ValueError: ``image_sizes`` or ``file_names`` not one per target, or a label outside
            ``[0, C)`` (naming the image).
    """
    count = len(targets)
    if len(image_sizes) != count:
        raise ValueError(f"compute_statistics: {len(image_sizes)} image sizes for {count} targets")
    files = [str(t.get("file_name", f"image {i}")) for i, t in enumerate(targets)] if file_names is None \
        else [str(f) for f in file_names]
    if len(files) != count:
        raise ValueError(f"compute_statistics: {len(files)} file names for {count} targets")
    names = _display_names(files)
    num_classes = len(class_names)
    objects_per_class = np.zeros(num_classes, np.int64)
    images_per_class = np.zeros(num_classes, np.int64)
    boxes_per_image, sizes, ratios = [], [], []
    crowd = difficult = 0
    tiny: list[str] = []
    tiny_count = border_count = 0
    border: list[str] = []
    for index, (target, (height, width)) in enumerate(zip(targets, image_sizes)):
        boxes = np.asarray(target["boxes"], np.float64).reshape(-1, 4)
        labels = np.asarray(target["labels"], np.int64).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{files[index]}: label {int(labels.max() if labels.max() >= num_classes else labels.min())}"
                             f" is outside [0, {num_classes}) (the class list has {num_classes} names)")
        boxes_per_image.append(len(boxes))
        objects_per_class += np.bincount(labels, minlength=num_classes)
        images_per_class[np.unique(labels)] += 1
        crowd += int(np.asarray(target.get("iscrowd", np.zeros(0))).astype(bool).sum())
        difficult += int(np.asarray(target.get("difficult", np.zeros(0))).astype(bool).sum())
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        sizes.append(np.sqrt(np.clip(widths * heights, 0, None)))
        ratios.append(widths / np.where(heights > 0, heights, np.nan))
        for k in np.flatnonzero(np.minimum(widths, heights) < tiny_box_size):
            tiny_count += 1
            if len(tiny) < max_examples:
                tiny.append(f"{names[index]}: box {k} {class_names[labels[k]]} {_box_text(boxes[k])} "
                            f"({widths[k]:.1f}x{heights[k]:.1f} px)")
        at_border = (boxes[:, 0] <= 0) | (boxes[:, 1] <= 0) | (boxes[:, 2] >= width) | (boxes[:, 3] >= height)
        for k in np.flatnonzero(at_border):
            border_count += 1
            if len(border) < max_examples:
                border.append(f"{names[index]}: box {k} {class_names[labels[k]]} {_box_text(boxes[k])} "
                              f"(image {width}x{height})")

    problems = [
        Problem("empty_classes", "classes with no objects", int((objects_per_class == 0).sum()),
                [f"{label}: {class_names[label]}" for label in np.flatnonzero(objects_per_class == 0)[:max_examples]],
                "a model cannot learn a class it never sees: label some images of it, or remove it from the "
                "class list (the labels of the classes after it shift)"),
        Problem("tiny_boxes", f"boxes smaller than {tiny_box_size:g} px on a side", tiny_count, tiny,
                "check that these are real objects (not stray clicks); detectors rarely find objects this "
                "small, so delete them or train at a larger input size"),
    ]
    report_counts = load_report.counts if load_report is not None else {}
    report_examples = {kind: [_shorten(example, load_report.dataset) for example in examples]
                       for kind, examples in load_report.examples.items()} if load_report is not None else {}
    problems.append(Problem(
        "boxes_outside_image", "boxes reaching outside the image (clipped to it on load)",
        int(report_counts.get(_CLIPPED_KIND, 0)), list(report_examples.get(_CLIPPED_KIND, []))[:max_examples],
        "fix the coordinates in the annotation files (a wrong image size, or boxes in another "
        "image's pixels); detkit trains on the clipped boxes"))
    problems.append(Problem(
        "degenerate_boxes", "degenerate boxes (zero or negative width or height; dropped on load)",
        int(report_counts.get(_DEGENERATE_KIND, 0)), list(report_examples.get(_DEGENERATE_KIND, []))[:max_examples],
        "fix or delete them in the annotation files (x2 <= x1 or y2 <= y1, often swapped corners); "
        "detkit leaves them out"))
    problems += _duplicate_problems(files, names, hash_images, max_examples)
    empty = [i for i, n in enumerate(boxes_per_image) if n == 0]
    problems.append(Problem(
        "images_without_objects", "images with no objects", len(empty), [names[i] for i in empty[:max_examples]],
        "fine as background examples (they teach what is not an object); if they should have "
        "objects, their labels are missing", severity="info"))
    problems.append(Problem(
        "boxes_at_border", "boxes touching the image border (objects cut by the frame)", border_count, border,
        "usually fine (truncated objects); many of them can mean a crop or a resize that the "
        "annotations did not follow", severity="info"))
    return DatasetStatistics(
        class_names=list(class_names), num_images=count,
        objects_per_class=[int(v) for v in objects_per_class], images_per_class=[int(v) for v in images_per_class],
        boxes_per_image=boxes_per_image,
        box_sizes=np.concatenate(sizes) if sizes else np.zeros(0),
        aspect_ratios=(lambda r: r[np.isfinite(r)])(np.concatenate(ratios) if ratios else np.zeros(0)),
        crowd_objects=crowd, difficult_objects=difficult, problems=problems)


def _duplicate_problems(files: Sequence[str], names: Sequence[str], hash_images: bool,
                        max_examples: int) -> list[Problem]:
    """The two duplicate problems: the same path listed twice, and different paths with the same bytes."""
    by_path: dict[str, list[int]] = defaultdict(list)
    for index, file in enumerate(files):
        by_path[os.path.realpath(file)].append(index)
    listed_twice = [indices for indices in by_path.values() if len(indices) > 1]
    problems = [Problem(
        "same_file_listed_twice", "images listed more than once (the same file; extra listings)",
        sum(len(indices) - 1 for indices in listed_twice),
        [f"{names[indices[0]]} listed {len(indices)} times (images {', '.join(map(str, indices))})"
         for indices in listed_twice[:max_examples]],
        "list each image once: its objects count twice in training and twice in the evaluation")]
    by_digest: dict[str, list[int]] = defaultdict(list)
    if hash_images:
        for indices in by_path.values():  # one file per path
            path = files[indices[0]]
            if os.path.isfile(path):
                by_digest[file_digest(path)].append(indices[0])
    same_bytes = [indices for indices in by_digest.values() if len(indices) > 1]
    problems.append(Problem(
        "duplicate_images", "duplicate images (the same bytes in different files; extra copies)",
        sum(len(indices) - 1 for indices in same_bytes),
        [" = ".join(names[i] for i in indices) for indices in same_bytes[:max_examples]],
        "keep one copy: copies inflate training and, split between train and val, leak the "
        "answers into the evaluation"))
    return problems


def dataset_statistics(dataset: Any, *, tiny_box_size: float = 4.0, hash_images: bool = True,
                       max_examples: int = 5) -> DatasetStatistics:
    """:func:`compute_statistics` of a :class:`~detkit.data.base.DetectionDataset` (no pixel is decoded).

    Args:
        dataset: has ``get_target(i)``, ``image_sizes``, ``class_names`` and ``len``; its
            ``load_report`` (when present) gives the boxes clipped and dropped on load.
        tiny_box_size, hash_images, max_examples: as in :func:`compute_statistics`.
    """
    targets = [dataset.get_target(index) for index in range(len(dataset))]
    return compute_statistics(targets, dataset.class_names, dataset.image_sizes,
                              load_report=getattr(dataset, "load_report", None), tiny_box_size=tiny_box_size,
                              hash_images=hash_images, max_examples=max_examples)
