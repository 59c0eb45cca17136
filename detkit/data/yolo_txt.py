"""YOLO txt datasets: ``images/<name>.<ext>`` with ``labels/<name>.txt`` beside them.

Each label line is ``class cx cy w h``: a 0-based class index, then the box centre and size
normalised by the image width and height (darknet / ultralytics format). detkit converts at this
edge to xyxy absolute pixels: ``x1 = (cx - w / 2) * W``, ``x2 = (cx + w / 2) * W`` (same in y).
YOLO files do not record the image size, so it is read from each image header at load time
(cheap, and it finds unreadable images before training). An image with no label file, or an
empty one, has no objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detkit.utils.image_io import read_image_size

from .base import DetectionDataset, ImageRecord, Transforms
from .parsing import parse_number, read_text_lines
from .validation import DatasetError, DatasetReport

__all__ = ["YOLODetection", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


_FIELDS = ("class", "cx", "cy", "w", "h")


def _read_label_file(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(normalised cxcywh [N, 4] float32, labels [N] int64)`` from one label file.

    Raises:
        DatasetError: a line without exactly five fields, a field that is not a finite number
            (the class an integer), or a class outside ``[0, num_classes)``: the file, the line
            number and the field named.
    """
    rows = []
    for line_number, line in enumerate(read_text_lines(path, "YOLO label file"), start=1):
        fields = line.split()
        if not fields:
            continue
        what = f"{path}: line {line_number}"
        if len(fields) != 5:
            raise DatasetError(f"{what}: expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}")
        label = int(parse_number(fields[0], "the class", what, integer=True))
        values = [parse_number(value, name, what) for name, value in zip(_FIELDS[1:], fields[1:])]
        if not 0 <= label < num_classes:
            raise DatasetError(
                f"{what}: class {label} is not in [0, {num_classes}) (the class list has {num_classes} names)"
            )
        rows.append([label, *values])
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return table[:, 1:].astype(np.float32), table[:, 0].astype(np.int64)


class YOLODetection(DetectionDataset):
    """A dataset in YOLO txt layout.

    Args:
        image_dir: folder of images (files with a suffix in :data:`IMAGE_SUFFIXES`, sorted).
        class_names: names of class indices ``0 .. C-1`` (e.g. from a ``.names`` file).
        label_dir: folder of ``<stem>.txt`` files; default: ``image_dir`` with its last
            ``images`` path component replaced by ``labels`` (ultralytics' rule).
        transforms: ``(image ndarray, target) -> (image tensor, target)``.
        skip_empty: leave out images with no box.

    Raises:
        FileNotFoundError: ``image_dir`` is not a folder.
        DatasetError: a label file that is not UTF-8 text, a line without five fields, a field
            that is not a finite number, or a class index outside the class list (names the
            file, the line and the field).
        ImageReadError: an image is missing or its header is unreadable.
    """

    def __init__(
        self,
        image_dir: str | Path,
        class_names: Sequence[str],
        *,
        label_dir: str | Path | None = None,
        transforms: Transforms | None = None,
        skip_empty: bool = False,
    ) -> None:
        image_dir = Path(image_dir)
        if label_dir is None:
            parts = list(image_dir.parts)
            if "images" not in parts:
                raise ValueError(f"cannot derive label_dir from {image_dir} (no 'images' component); pass label_dir")
            index = len(parts) - 1 - parts[::-1].index("images")
            parts[index] = "labels"
            label_dir = Path(*parts)
        label_dir = Path(label_dir)
        source = str(label_dir)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"YOLO image folder not found: {image_dir}")
        image_paths = sorted(path for path in image_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)

        records = []
        for image_path in image_paths:
            label_path = label_dir / f"{image_path.stem}.txt"
            if label_path.is_file():
                cxcywh, labels = _read_label_file(label_path, len(class_names))
            else:
                cxcywh, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
            height, width = read_image_size(image_path)
            centres, half_sizes = cxcywh[:, :2], cxcywh[:, 2:] / 2
            scale = np.asarray([width, height], dtype=np.float32)
            boxes = np.concatenate([(centres - half_sizes) * scale, (centres + half_sizes) * scale], axis=1)
            records.append(
                ImageRecord(
                    image_id=image_path.stem,
                    path=image_path,
                    size=(height, width),
                    boxes=boxes.astype(np.float32),
                    labels=labels,
                    where=str(label_path),
                )
            )
        super().__init__(
            records, class_names, source, transforms=transforms, skip_empty=skip_empty, report=DatasetReport(source)
        )
