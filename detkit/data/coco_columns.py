"""COCO instances json straight into :class:`~detkit.data.records.RecordStore` columns.

:class:`~detkit.data.coco.CocoDetection` reads a COCO-train-sized file (118,000 images, 883,000
polygon annotations) through here: the json is parsed with ``orjson`` where it is installed (the
standard ``json`` otherwise), each field is pulled out of all records at once into a numpy column,
checked in bulk (types, finiteness, ranges, unknown ids), grouped by image with one stable sort,
and the parsed Python objects are dropped. What the bulk checks do not accept as it is (string
ids, ``ignore`` flags, absent areas, integral floats where ints belong, any malformed record)
makes :func:`coco_record_store` answer ``None``, and the reader falls back to its record-by-record
loop, which gives the same records and words every error; so the columns never change what a
file means, only how fast it loads and how little memory it keeps. Files of
``detkit.data.coco.PARSE_IN_CHILD_MIN_BYTES`` (32 MiB) or more are parsed and turned into these
columns in forked children, several at once (:mod:`detkit.data.coco_parallel`), so that the
parsed objects never enter the loading process.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from .parsing import read_json
from .records import RecordStore, SegmentationColumn, StringColumn
from .validation import DatasetReport

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; json still works
    orjson = None

__all__ = ["AnnotationColumns", "ImageColumns", "annotation_columns", "coco_record_store", "image_columns", "list_of_dicts", "read_coco_json"]


def read_coco_json(path: Path) -> Any:
    """Parse a COCO json: ``orjson`` when installed, and :func:`~detkit.data.parsing.read_json`
    (the standard parser, whose errors name the line and column) for anything orjson refuses
    (``NaN`` literals, truncated or non-UTF-8 files) or when orjson is absent."""
    if orjson is not None and path.is_file():
        try:
            return orjson.loads(path.read_bytes())
        except (orjson.JSONDecodeError, ValueError, OverflowError):
            pass
    return read_json(path, "COCO annotation file")


def _only(values: Iterable[Any], *types: type) -> bool:
    """Every value's type is exactly one of ``types`` (``bool`` is not ``int`` here)."""
    return set(map(type, values)) <= set(types)


def _offsets(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _column(records: Sequence[dict], key: str, default: Any = KeyError) -> list[Any] | None:
    """``record[key]`` of every record (``default`` where absent, unless ``KeyError``: then
    ``None`` when a record lacks the key)."""
    try:
        return list(map(itemgetter(key), records))
    except KeyError:
        if default is KeyError:
            return None
        return [record.get(key, default) for record in records]


def list_of_dicts(document: Any, key: str) -> list[dict] | None:
    """``document[key]`` when it is a list of plain dicts (a check in bulk), else ``None``."""
    if type(document) is dict and type(document.get(key)) is list and _only(document[key], dict):
        return document[key]
    return None


def _join_paths(folder: Path, names: list[str]) -> list[str]:
    """``[str(folder / name) for name in names]``, by string concatenation where that is the same
    (names without a leading or trailing ``/``, ``//`` or ``.`` components), else through
    :class:`~pathlib.Path`."""
    text = str(folder)
    prefix = "" if text == "." else text if text.endswith("/") else text + "/"
    joined = []
    for name in names:
        wrapped = f"/{name}/"
        if name[0] == "/" or name[-1] == "/" or "//" in name or "/./" in wrapped:
            joined.append(str(folder / name))
        else:
            joined.append(prefix + name)
    return joined


_SEGMENTATION_TYPES = {type(None): 0, list: 1, dict: 2}
_NUMBER_LIST_BYTES = b"0123456789.-+eE[],"  # what the json text of lists of finite numbers is made of

if orjson is not None:
    _dumps = orjson.dumps
else:  # pragma: no cover
    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _numbers(rows: list[list], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values [sum(lengths)] float64, all_float [R] bool)``: the concatenated numbers of ``rows``
    (lists of json numbers) and whether each row holds Python floats only; ``None`` when a value is
    not an int or a float (a string, ``null``, a list, a bool).

    One C-level pass converts (``array('d')`` refuses strings, ``None`` and lists); only the rows
    holding an integral value (where an int or a bool could hide) have their types looked at.
    """
    try:
        values = np.frombuffer(array("d", chain.from_iterable(rows)), dtype=np.float64)
    except (TypeError, OverflowError):
        return None
    if len(values) != int(lengths.sum()):
        return None
    offsets = _offsets(lengths)
    integral = _offsets((values == np.trunc(values)).astype(np.int64))
    suspects = np.flatnonzero(integral[offsets[1:]] != integral[offsets[:-1]])
    all_float = np.ones(len(rows), dtype=bool)
    seen: set[type] = set()
    for row in suspects.tolist():
        types = set(map(type, rows[row]))
        seen |= types
        all_float[row] = types == {float}
    if not seen <= {int, float}:
        return None
    return values, all_float


def _segmentations(segmentations: list[Any]) -> SegmentationColumn | None:
    """Per-annotation segmentations as json texts in one buffer (``None``: one the bulk checks
    do not take). The checks are those of the record loop: polygons are lists of >= 3 x, y pairs of
    finite numbers, an RLE has ``counts`` and ``size``; the numbers are checked on the json text
    (only digits, signs, points and exponents: no string, bool or null, NaN or infinity)."""
    codes = np.fromiter(map(_SEGMENTATION_TYPES.get, map(type, segmentations), repeat(-1)), np.int8,
                        len(segmentations))
    if (codes < 0).any():
        return None
    dict_index = np.flatnonzero(codes == 2)
    if not all("counts" in segmentations[i] and "size" in segmentations[i] for i in dict_index.tolist()):
        return None
    lists = [segmentations[i] for i in np.flatnonzero(codes == 1).tolist()]
    polygons = list(chain.from_iterable(lists))
    if not _only(polygons, list):
        return None
    lengths = np.fromiter(map(len, polygons), np.int64, len(polygons))
    if (lengths < 6).any() or (lengths % 2).any():
        return None
    # One json text of all polygon lists: only number and list characters (no string, bool, null,
    # NaN or infinity), lists nested no deeper than polygons; each annotation's span found by depth.
    try:
        text = _dumps(lists)
        rle_texts = [_dumps(segmentations[i]) for i in dict_index.tolist()]
    except (TypeError, ValueError):  # ints beyond 64 bits; NaN for the standard json
        return None
    if text.translate(None, _NUMBER_LIST_BYTES):
        return None
    spans = _element_spans(text, len(lists), len(polygons))
    if spans is None:
        return None
    kinds = np.where(codes == 0, 0, 1).astype(np.int8)
    starts = np.zeros(len(segmentations), dtype=np.int64)
    stops = np.zeros(len(segmentations), dtype=np.int64)
    starts[codes == 1], stops[codes == 1] = spans
    rle_offsets = _offsets(np.fromiter(map(len, rle_texts), np.int64, len(rle_texts))) + len(text)
    starts[dict_index], stops[dict_index] = rle_offsets[:-1], rle_offsets[1:]
    buffer = np.frombuffer(text + b"".join(rle_texts) if rle_texts else text, dtype=np.uint8)
    return SegmentationColumn(kinds, starts, stops, buffer)


_SPAN_CHUNK = 1 << 24


def _element_spans(text: bytes, elements: int, polygons: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(starts, stops)`` byte spans of the ``elements`` items of ``text``, the json of a list of
    lists of ``polygons`` lists of numbers; ``None`` when it is nested differently."""
    data = np.frombuffer(text, dtype=np.uint8)
    positions = []
    for begin in range(0, len(data), _SPAN_CHUNK):  # in chunks: small temporaries
        part = data[begin:begin + _SPAN_CHUNK]
        positions.append(np.flatnonzero((part == ord("[")) | (part == ord("]"))) + begin)
    where = np.concatenate(positions)
    opens = data[where] == ord("[")
    level = np.cumsum(np.where(opens, 1, -1))  # the depth after each bracket
    if (len(level) and level.max() > 3) or (len(level) and level[-1] != 0):
        return None
    start = where[opens & (level == 2)]
    stop = where[~opens & (level == 1)] + 1
    if int(np.count_nonzero(opens & (level == 3))) != polygons or len(start) != elements or len(stop) != elements:
        return None
    return start, stop


@dataclass
class AnnotationColumns:
    """A COCO json's annotations as columns (``N`` annotations, file order), checked in bulk:
    ``image_ids``, ``category_ids`` and ``iscrowd`` ``[N]`` int64 (crowd flags 0 / 1), ``xywh
    [N, 4]`` float64 finite, ``area [N]`` float64 finite >= 0 and, when read with masks, the
    ``segmentations``. Parts of one list (read in parallel) join with :meth:`concatenate`."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    xywh: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray
    segmentations: SegmentationColumn | None

    def __len__(self) -> int:
        return len(self.image_ids)

    @staticmethod
    def concatenate(parts: Sequence[AnnotationColumns]) -> AnnotationColumns:
        """The annotations of ``parts`` in order (segmentations only if every part has them)."""
        segmentations = None
        if all(part.segmentations is not None for part in parts):
            segmentations = SegmentationColumn.concatenate([part.segmentations for part in parts])
        return AnnotationColumns(*(np.concatenate([getattr(part, name) for part in parts])
                                   for name in ("image_ids", "category_ids", "xywh", "iscrowd", "area")),
                                 segmentations)


def annotation_columns(annotations: list[dict], with_masks: bool) -> AnnotationColumns | None:
    """The ``annotations`` records as :class:`AnnotationColumns` (segmentations only
    ``with_masks``), or ``None`` when one is not of the plain form the bulk checks accept."""
    ann_image_ids, category_ids = _column(annotations, "image_id"), _column(annotations, "category_id")
    bboxes = _column(annotations, "bbox")
    if ann_image_ids is None or category_ids is None or bboxes is None:
        return None
    if not (_only(ann_image_ids, int) and _only(category_ids, int)):
        return None
    if any(map(dict.__contains__, annotations, repeat("ignore"))):
        return None  # 'ignore' flags: the loop skips and counts them
    crowd, areas = _column(annotations, "iscrowd", 0), _column(annotations, "area", None)
    assert crowd is not None and areas is not None
    if not (_only(crowd, int) and _only(areas, int, float)):
        return None
    if not (_only(bboxes, list) and set(map(len, bboxes)) <= {4}):
        return None
    parsed = _numbers(bboxes, np.full(len(bboxes), 4, dtype=np.int64))
    if parsed is None:
        return None
    xywh = parsed[0].reshape(-1, 4)
    del bboxes
    try:
        ann_images = np.asarray(ann_image_ids, dtype=np.int64).reshape(-1)
        categories = np.asarray(category_ids, dtype=np.int64).reshape(-1)
        iscrowd = np.asarray(crowd, dtype=np.int64).reshape(-1)
    except OverflowError:
        return None
    area = np.asarray(areas, dtype=np.float64).reshape(-1)
    if not (np.isfinite(xywh).all() and np.isfinite(area).all() and (area >= 0).all()):
        return None
    if not np.isin(iscrowd, (0, 1)).all():
        return None
    segmentation_column = None
    if with_masks:
        segmentation_column = _segmentations(_column(annotations, "segmentation", None))
        if segmentation_column is None:
            return None
    return AnnotationColumns(ann_images, categories, xywh, iscrowd, area, segmentation_column)


@dataclass
class ImageColumns:
    """A COCO json's ``M`` image records as columns: ``image_ids [M]`` int64, ``sizes [M, 2]``
    int64 ``(height, width)`` > 0, the image ``paths`` and the ``wheres`` naming each record."""

    image_ids: np.ndarray
    sizes: np.ndarray
    paths: StringColumn
    wheres: StringColumn

    def __len__(self) -> int:
        return len(self.image_ids)


def image_columns(images: list[dict], image_dir: Path, source: str) -> ImageColumns | None:
    """The ``images`` records (int ids, non-empty str ``file_name``, positive int ``height`` and
    ``width``) as :class:`ImageColumns`, or ``None`` when one is of another form."""
    ids, names = _column(images, "id"), _column(images, "file_name")
    heights, widths = _column(images, "height"), _column(images, "width")
    if ids is None or names is None or heights is None or widths is None:
        return None
    if not (_only(ids, int) and _only(names, str) and _only(heights, int) and _only(widths, int)) or not all(names):
        return None
    try:
        image_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        sizes = np.asarray([heights, widths], dtype=np.int64).T.reshape(-1, 2)
    except OverflowError:
        return None
    if (sizes <= 0).any():
        return None
    wheres = StringColumn([f"{source}: image {image_id} ({name})" for image_id, name in zip(ids, names)])
    return ImageColumns(image_ids, sizes, StringColumn(_join_paths(image_dir, names)), wheres)


def coco_record_store(images: list[dict] | ImageColumns, annotations: list[dict] | AnnotationColumns, image_dir: Path, source: str,
                      with_masks: bool, category_id_to_label: dict[Any, int], known_ids: set,
                      report: DatasetReport) -> RecordStore | None:
    """The records of a COCO json's ``images`` and ``annotations`` as columns.

    Args:
        images: the json's ``images`` records, or their :func:`image_columns`.
        annotations: its ``annotations`` records, or their :func:`annotation_columns`.
        image_dir: the folder the ``file_name`` s are relative to.
        source: the json, named in messages (``where`` of each record).
        with_masks: keep the segmentations.
        category_id_to_label: the chosen categories' ids -> labels; annotations of the other
            known categories are skipped and counted in ``report``.
        known_ids: every category id of the file.
        report: receives the skipped counts.

    Returns:
        The store (boxes not yet clipped: :class:`~detkit.data.base.DetectionDataset` does that),
        or ``None`` when a record is not of the plain form the bulk checks accept; the caller then
        reads record by record (same result, or the worded error).
    """
    if not _only(known_ids, int) or not _only(category_id_to_label, int):
        return None
    image_table = images if isinstance(images, ImageColumns) else image_columns(images, image_dir, source)
    if image_table is None:
        return None
    image_ids, sizes, wheres = image_table.image_ids, image_table.sizes, image_table.wheres
    by_id = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[by_id]
    if (np.diff(sorted_ids) == 0).any():
        return None

    columns = annotations if isinstance(annotations, AnnotationColumns) else annotation_columns(annotations, with_masks)
    if columns is None or (with_masks and columns.segmentations is None):
        return None
    ann_images, categories, xywh = columns.image_ids, columns.category_ids, columns.xywh
    iscrowd, area, segmentation_column = columns.iscrowd, columns.area, columns.segmentations
    position = np.minimum(np.searchsorted(sorted_ids, ann_images), max(len(sorted_ids) - 1, 0))
    if len(ann_images) and (not len(sorted_ids) or (sorted_ids[position] != ann_images).any()):
        return None  # annotations of absent images
    known = np.asarray(sorted(known_ids), dtype=np.int64)
    if len(categories) and not np.isin(categories, known).all():
        return None  # unknown category ids
    image_of = by_id[position] if len(ann_images) else np.zeros(0, dtype=np.int64)
    if not with_masks:
        segmentation_column = None

    # group by image in file order, skip the categories not chosen (counted as the loop does)
    order = np.argsort(image_of, kind="stable")
    chosen_ids = np.asarray(sorted(category_id_to_label), dtype=np.int64)
    chosen = np.isin(categories[order], chosen_ids)
    skipped = np.flatnonzero(~chosen)
    kind = "annotations of classes not in class_names skipped"
    for index in skipped[:5].tolist():
        annotation = int(order[index])
        report.add(kind, f"{wheres[int(image_of[annotation])]}: {int(categories[annotation])}")
    if len(skipped) > 5:
        report.counts[kind] += len(skipped) - 5
    keep = order[chosen]
    lut_ids = np.asarray(list(category_id_to_label), dtype=np.int64)
    lut_labels = np.asarray(list(category_id_to_label.values()), dtype=np.int64)
    sort = np.argsort(lut_ids)
    labels = lut_labels[sort][np.searchsorted(lut_ids[sort], categories[keep])] if len(keep) else np.zeros(0, np.int64)
    x, y, w, h = xywh[keep].T
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32).reshape(-1, 4)
    counts = np.bincount(image_of[keep], minlength=len(images)).astype(np.int64)
    return RecordStore(
        image_ids, image_table.paths, sizes, wheres,
        _offsets(counts), boxes, labels.astype(np.int64),
        {"iscrowd": iscrowd[keep], "area": area[keep].astype(np.float32)},
        segmentation_column.take(keep) if segmentation_column is not None else None)
