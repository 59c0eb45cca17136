"""WIDER FACE: the ``wider_face_{train,val}_bbx_gt.txt`` ground truth and a dataset over it.

The file lists, for each image::

    0--Parade/0_Parade_marchingband_1_849.jpg      image path under WIDER_{train,val}/images/
    1                                              number of faces
    449 330 122 149 0 0 0 0 0 0                    x y w h blur expression illumination invalid occlusion pose

An image with no faces has count ``0`` followed by one all-zero line, which is not a face. Boxes
are ``x y w h`` in pixels (top-left corner and size) and become xyxy ``[x, y, x + w, y + h]``.
The flags are carried into the targets as int64 ``[N]`` fields:

======================  =====================================================
``blur``                0 clear, 1 normal blur, 2 heavy blur
``expression``          0 typical, 1 exaggerated
``illumination``        0 normal, 1 extreme
``invalid``             0 valid, 1 invalid (the benchmark ignores these faces)
``occlusion``           0 none, 1 partial, 2 heavy
``pose``                0 typical, 1 atypical
======================  =====================================================

plus ``ignore [N]`` bool (= ``invalid``), which :mod:`detkit.evaluation.face_ap` treats like VOC's
"difficult" and :mod:`detkit.models.mtcnn_training` draws no positives around. WIDER FACE's
official easy / medium / hard subsets come from ``wider_*_val.mat`` files (not read here): see
:mod:`detkit.evaluation.face_ap` for the subsets it derives from these flags and box sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detkit.utils.image_io import read_image_size

from .base import DetectionDataset, ImageRecord, Transforms
from .parsing import parse_number, read_text_lines
from .validation import DatasetError, DatasetReport

__all__ = ["WIDER_FACE_FLAGS", "WiderFaceEntry", "WiderFaceDetection", "parse_wider_face_gt", "wider_face_dataset"]

WIDER_FACE_FLAGS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass
class WiderFaceEntry:
    """One image of a WIDER FACE ground-truth file.

    Attributes:
        file_name: path relative to the ``images`` folder, e.g. ``0--Parade/0_Parade_..._849.jpg``.
        boxes: ``[N, 4]`` float32 xyxy pixels.
        flags: ``WIDER_FACE_FLAGS`` name -> ``[N]`` int64.
        line: 1-based line of the file name in the file (for messages).
    """

    file_name: str
    boxes: np.ndarray
    flags: dict[str, np.ndarray]
    line: int


def parse_wider_face_gt(source: str | Path | Iterable[str]) -> list[WiderFaceEntry]:
    """Parses a ``wider_face_*_bbx_gt.txt`` file (or its lines).

    Args:
        source: the file's path, or an iterable of its lines.

    Returns:
        One entry per image, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        DatasetError: a face line where an image path should be, a missing or non-integer count,
            a face line with fewer than ten fields or a field that is not a finite number, or a
            file that ends early (message gives the file and the line).
    """
    name = str(source) if isinstance(source, (str, Path)) else "<lines>"
    lines = read_text_lines(source, "WIDER FACE ground-truth file") if isinstance(source, (str, Path)) else list(source)
    entries: list[WiderFaceEntry] = []
    i = 0
    while i < len(lines):
        file_name = lines[i].strip()
        if not file_name:
            i += 1
            continue
        where = f"{name}:{i + 1}"
        if _is_numbers(file_name):
            raise DatasetError(f"{where}: expected an image path, got {file_name!r} (a face line: the face count "
                               "of the image before is too small?)")
        count_line = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not count_line.isdigit():
            raise DatasetError(f"{name}:{i + 2}: expected the face count of {file_name!r} (an integer >= 0), got "
                               f"{count_line!r}" + (" (the file ends)" if i + 1 >= len(lines) else ""))
        count = int(count_line)
        # An image with no faces still has one (all-zero) face line.
        rows = lines[i + 2:i + 2 + max(count, 1)]
        if len(rows) < max(count, 1):
            raise DatasetError(f"{where}: {file_name} announces {count} faces but the file ends after {len(rows)}")
        values = np.array(
            [_face_values(row, f"{name}:{i + 3 + k}", file_name) for k, row in enumerate(rows)], dtype=np.float64
        ).reshape(-1, 10)[:count]
        xywh = values[:, :4].astype(np.float32)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        flags = {flag: values[:, 4 + k].astype(np.int64) for k, flag in enumerate(WIDER_FACE_FLAGS)}
        entries.append(WiderFaceEntry(file_name, boxes, flags, i + 1))
        i += 2 + max(count, 1)
    return entries


def _is_numbers(line: str) -> bool:
    try:
        [float(value) for value in line.split()]
    except ValueError:
        return False
    return True


def _face_values(row: str, where: str, file_name: str) -> list[float]:
    """The ten numbers of one face line (``x y w h`` and the six flags; extra fields ignored).

    Raises:
        DatasetError: fewer than ten fields, or one that is not a finite number (line named).
    """
    fields = row.split()
    expected = f"a face line of {file_name} needs 10 numbers 'x y w h {' '.join(WIDER_FACE_FLAGS)}'"
    if len(fields) < 10:
        raise DatasetError(f"{where}: {expected}, got {len(fields)} fields: {row.strip()!r}")
    values = []
    for index, (name, value) in enumerate(zip(("x", "y", "w", "h", *WIDER_FACE_FLAGS), fields[:10])):
        try:
            values.append(parse_number(value, name, where, integer=index >= 4))
        except DatasetError:
            kind = "an integer" if index >= 4 else "a finite number"
            raise DatasetError(f"{where}: {expected}; {name} is {value!r}, not {kind}") from None
    return values


class WiderFaceDetection(DetectionDataset):
    """WIDER FACE (or any data in its ground-truth format): one class, ``"face"``.

    Image sizes are read from the image headers when the dataset is built (the format does not
    record them). Items follow conventions.md; targets add the flags of the module docstring,
    ``ignore [N]`` bool and ``landmarks`` never (WIDER's bbx files have none).

    Args:
        images_root: the ``WIDER_{train,val}/images`` folder.
        annotation_file: ``wider_face_{train,val}_bbx_gt.txt``.
        keep_invalid: keep faces flagged invalid (as ``ignore``); drop them when False.
        min_size: drop faces whose width or height is ``<= min_size`` pixels (WIDER has a few
            zero-size boxes; they are always dropped).
        transforms: ``(image ndarray, target) -> (image tensor, target)``.
        skip_empty: leave out images without faces.
    """

    def __init__(
        self,
        images_root: str | Path,
        annotation_file: str | Path,
        *,
        keep_invalid: bool = True,
        min_size: float = 0.0,
        transforms: Transforms | None = None,
        skip_empty: bool = False,
    ) -> None:
        images_root = Path(images_root)
        report = DatasetReport(str(annotation_file))
        records = []
        for entry in parse_wider_face_gt(annotation_file):
            path = images_root / entry.file_name
            fields = dict(entry.flags, ignore=entry.flags["invalid"] > 0)
            record = ImageRecord(
                image_id=entry.file_name.rsplit(".", 1)[0], path=path, size=read_image_size(path),
                boxes=entry.boxes, labels=np.zeros(len(entry.boxes), dtype=np.int64), box_fields=fields,
                where=f"{annotation_file}:{entry.line}",
            )
            wh = entry.boxes[:, 2:] - entry.boxes[:, :2]
            keep = (wh > min_size).all(axis=1) & (keep_invalid | ~fields["ignore"])
            report.add("faces dropped (invalid or too small)", record.where, int((~keep).sum()))
            record.select(keep)
            records.append(record)
        super().__init__(records, ["face"], str(annotation_file), transforms=transforms, skip_empty=skip_empty,
                         report=report)


def wider_face_dataset(
    root: str | Path,
    split: str = "train",
    transforms: Transforms | None = None,
    keep_invalid: bool = True,
    min_size: float = 0.0,
    skip_empty: bool = False,
) -> WiderFaceDetection:
    """WIDER FACE (or data in its format) in its distribution layout under ``root``::

        root/WIDER_{split}/images/<event>/<image>.jpg
        root/wider_face_split/wider_face_{split}_bbx_gt.txt

    Args:
        root: the folder holding ``WIDER_{split}`` and ``wider_face_split``.
        split: ``"train"`` or ``"val"``.
        transforms, keep_invalid, min_size, skip_empty: as :class:`WiderFaceDetection`'s.

    Raises:
        ValueError: an unknown ``split``.
        FileNotFoundError: the images folder or the ground-truth file is missing (both paths named).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    images_root = root / f"WIDER_{split}" / "images"
    annotation_file = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    missing = [str(p) for p in (images_root, annotation_file) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"root={str(root)!r} is not a WIDER FACE folder: missing {' and '.join(missing)} "
            f"(expected WIDER_{split}/images/ and wider_face_split/wider_face_{split}_bbx_gt.txt under it)"
        )
    return WiderFaceDetection(images_root, annotation_file, keep_invalid=keep_invalid, min_size=min_size,
                              transforms=transforms, skip_empty=skip_empty)
