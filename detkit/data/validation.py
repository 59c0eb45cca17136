"""Load-time checks shared by every dataset reader, and the report of what they fixed.

What is checked, and when (each message names the annotation file or image and the item):

* **missing image file**: every image path is checked for existence when the dataset is built
  (:func:`check_image_files`), so a training run fails before its first step;
* **unreadable or corrupt image**: decoding happens in ``__getitem__`` and raises
  :class:`~detkit.data.image_io.ImageReadError` naming the file; ``verify_images=True`` on a
  dataset reads every header at load time instead (cheap, catches most corrupt files early);
* **box outside the image**: clipped to ``[0, W] x [0, H]`` and counted (:func:`sanitize_boxes`);
* **degenerate box** (zero or negative width or height after clipping): dropped and counted;
* **unknown category** (a VOC class name or COCO category id not in the class list): a
  :class:`DatasetError` naming the file and the name;
* **duplicate COCO image ids** (two records would be merged) and **annotations of absent images**
  (they would vanish): a :class:`DatasetError` naming the file, the ids and the count
  (:func:`detkit.data.coco.group_annotations_by_image`, also run by ``detkit eval``'s reader);
* **class list that does not match the model**: :func:`check_class_names` with a diff;
* **malformed annotation files** (truncated json or xml, missing keys, non-numeric fields): the
  readers parse through :mod:`detkit.data.parsing`, one line naming the file and the record;
* **a box that becomes NaN or infinite in a transform** (:class:`~detkit.data.transforms.DetectionTransform`,
  mosaic, mixup): a :class:`DatasetError` naming the image file, the transform and the box
  (:func:`require_finite_boxes`); boxes a pipeline crops away or shrinks below its minimum size
  are dropped, as documented, and counted in the transform's ``drop_report``.

Counts are gathered in a :class:`DatasetReport`, which a dataset logs once when it has loaded.
(It was called ``LoadReport``, the name of the report of loading weights into a module,
:class:`detkit.utils.checkpoint.LoadReport`; ``LoadReport`` here is a deprecated alias.)
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit.utils.image_io import ImageReadError, read_image_size

__all__ = [
    "DatasetError",
    "DatasetReport",
    "require_finite_boxes",
    "sanitize_boxes",
    "check_image_files",
    "verify_image_headers",
    "check_class_names",
]

logger = logging.getLogger("detkit.data")

_MAX_EXAMPLES = 5  # how many offending items a report or error quotes per kind


class DatasetError(ValueError):
    """Annotations that cannot be loaded as given (unknown class, bad class list, bad record)."""


@dataclass
class DatasetReport:
    """Counts of what a dataset's load-time checks fixed, with a few examples of each kind.

    Attributes:
        dataset: a name for the dataset in log lines (e.g. the annotation file).
        counts: kind -> number of occurrences (``"boxes clipped to the image"``, ...).
        examples: kind -> up to 5 descriptions ``"<file>: <item>: <detail>"``.
        num_images: images in the dataset after filtering.
        num_boxes: boxes kept.
    """

    dataset: str
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    num_images: int = 0
    num_boxes: int = 0

    def add(self, kind: str, example: str, count: int = 1) -> None:
        """Count ``count`` occurrences of ``kind``; keep ``example`` when fewer than 5 are kept."""
        if count <= 0:
            return
        self.counts[kind] += count
        kept = self.examples.setdefault(kind, [])
        if len(kept) < _MAX_EXAMPLES:
            kept.append(example)

    def summary(self) -> str:
        """One line of totals, then one line per kind with its count and examples."""
        lines = [f"{self.dataset}: {self.num_images} images, {self.num_boxes} boxes"]
        for kind, count in sorted(self.counts.items()):
            lines.append(f"  {count} {kind}, e.g. " + "; ".join(self.examples.get(kind, [])))
        return "\n".join(lines)

    def log(self) -> None:
        """Log the summary once: INFO when nothing was fixed, WARNING otherwise."""
        level = logging.WARNING if self.counts else logging.INFO
        logger.log(level, "%s", self.summary())


def sanitize_boxes(
    boxes: np.ndarray,
    image_size: tuple[int, int],
    where: str,
    report: DatasetReport,
    min_size: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image and find the degenerate ones.

    Coordinates are continuous xyxy in pixels (pixel ``i`` covers ``[i, i + 1)``), so the image
    spans ``[0, W] x [0, H]`` and a box's width is ``x2 - x1`` (no +1).

    Args:
        boxes: ``[N, 4]`` float xyxy absolute pixels.
        image_size: ``(height, width)`` in pixels.
        where: names the file and image in the report, e.g. ``"ann.json: image 42"``.
        report: receives the counts of clipped and dropped boxes.
        min_size: boxes whose width or height is ``<= min_size`` after clipping are degenerate.

    Returns:
        ``(clipped_boxes [N, 4] float32, keep [N] bool)``: the caller drops ``~keep`` from every
        per-box field so they stay aligned.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    height, width = image_size
    finite = np.isfinite(boxes).all(axis=1)
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0.0, float(width))
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0.0, float(height))
    changed = finite & (clipped != boxes).any(axis=1)
    keep = finite & (clipped[:, 2] - clipped[:, 0] > min_size) & (clipped[:, 3] - clipped[:, 1] > min_size)
    for index in np.flatnonzero(changed & keep):
        report.add(
            "boxes clipped to the image",
            f"{where}: box {index} {boxes[index].tolist()} -> {clipped[index].tolist()} (image {width}x{height})",
        )
    for index in np.flatnonzero(~keep):
        report.add(
            "degenerate boxes dropped",
            f"{where}: box {index} {boxes[index].tolist()} (zero, negative or non-finite size after clipping "
            f"to {width}x{height})",
        )
    return np.where(finite[:, None], clipped, 0.0).astype(np.float32), keep


def require_finite_boxes(boxes: Any, where: str, stage: str = "") -> None:
    """Raise a :class:`DatasetError` naming the first box with a NaN or infinite coordinate.

    For boxes made in memory (a transform's output, a mosaic), where a non-finite value is a bug
    that must not reach the loss; annotation files are checked by their readers.

    Args:
        boxes: ``[N, 4]`` xyxy (array or tensor).
        where: the image file (and item) for the message.
        stage: what made the boxes (``"after MosaicDataset"``), quoted in the message.
    """
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(array).all(axis=1)
    if finite.all():
        return
    bad = np.flatnonzero(~finite)
    more = f" ({len(bad)} of {len(array)} boxes)" if len(bad) > 1 else ""
    stage = f" {stage}" if stage else ""
    raise DatasetError(f"{where}: box {int(bad[0])} is not finite{stage}: {array[bad[0]].tolist()}{more}")


def check_image_files(paths: Iterable[Path], source: str) -> None:
    """Raise a :class:`~detkit.data.image_io.ImageReadError` listing image files that do not exist.

    Args:
        paths: the image files a dataset will read.
        source: the annotation file or folder that refers to them (named in the message).
    """
    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        shown = "\n  ".join(missing[:_MAX_EXAMPLES])
        more = f"\n  ... and {len(missing) - _MAX_EXAMPLES} more" if len(missing) > _MAX_EXAMPLES else ""
        raise ImageReadError(f"{source}: {len(missing)} image file(s) not found:\n  {shown}{more}")


def verify_image_headers(paths: Iterable[Path], sizes: Sequence[tuple[int, int] | None], source: str) -> None:
    """Read every image's header; raise naming the file when one is unreadable or its size is not
    the size its annotations record (``sizes[i]`` ``(height, width)``, ``None`` when unknown)."""
    for path, expected in zip(paths, sizes):
        actual = read_image_size(path)
        if expected is not None and tuple(expected) != actual:
            raise DatasetError(
                f"{source}: image {path} is {actual[1]}x{actual[0]} (WxH) but its annotations say "
                f"{expected[1]}x{expected[0]}"
            )


def check_class_names(dataset_names: Sequence[str], model_names: Sequence[str]) -> None:
    """Raise a :class:`DatasetError` unless a dataset's class list equals the model's, in order.

    Labels are indices into the class list, so the same names in another order silently swap
    classes; this check makes that loud.

    Raises:
        DatasetError: with the names only in one list and the first position where they differ.
    """
    dataset_names, model_names = list(dataset_names), list(model_names)
    if dataset_names == model_names:
        return
    only_dataset = [name for name in dataset_names if name not in model_names]
    only_model = [name for name in model_names if name not in dataset_names]
    lines = [f"class names of the dataset ({len(dataset_names)}) do not match the model's ({len(model_names)}):"]
    if only_dataset:
        lines.append(f"  only in the dataset: {only_dataset}")
    if only_model:
        lines.append(f"  only in the model: {only_model}")
    for index, (ours, theirs) in enumerate(zip(dataset_names, model_names)):
        if ours != theirs:
            lines.append(f"  first difference at label {index}: dataset {ours!r} vs model {theirs!r}")
            break
    if not only_dataset and not only_model and len(dataset_names) == len(model_names):
        lines.append("  (same names in a different order: labels would be swapped)")
    raise DatasetError("\n".join(lines))


def __getattr__(name: str) -> Any:
    if name == "LoadReport":
        warnings.warn("detkit.data LoadReport is deprecated: it is DatasetReport (LoadReport is "
                      "detkit.utils.checkpoint's report of loading weights)", DeprecationWarning,
                      stacklevel=2)
        return DatasetReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
