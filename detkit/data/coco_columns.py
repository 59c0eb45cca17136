"""COCO instances json straight into :class:`~detkit.data.records.RecordStore` columns.

:class:`~detkit.data.coco.CocoDetection` reads a COCO-train-sized file (118,000 images, 883,000
polygon annotations) through here: the json is parsed with ``orjson`` where it is installed (the
standard ``json`` otherwise), each field is pulled out of all records at once into a numpy column,
checked in bulk (types, finiteness, ranges, unknown ids), grouped by image with one stable sort,
and the parsed Python objects are dropped. What the bulk checks do not accept as it is (string
ids, ``ignore`` flags, absent areas, integral floats where ints belong, any malformed record)
makes :func:`coco_record_store` answer ``None``, and the reader falls back to its record-by-record
loop, which gives the same records and words every error; so the columns never change what a
file means, only how fast it loads and how little memory it keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from .parsing import read_json
from .records import ObjectColumn, RecordStore, SegmentationColumn, StringColumn, ragged_take
from .validation import DatasetReport

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; json still works
    orjson = None

__all__ = ["coco_record_store", "list_of_dicts", "read_coco_json"]


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


def _segmentations(segmentations: list[Any]) -> SegmentationColumn | None:
    """Per-annotation segmentations as a column (``None``: one the bulk checks do not take)."""
    kinds = np.zeros(len(segmentations), dtype=np.int8)
    is_list = np.fromiter((type(s) is list for s in segmentations), bool, len(segmentations))
    is_dict = np.fromiter((type(s) is dict for s in segmentations), bool, len(segmentations))
    is_none = np.fromiter((s is None for s in segmentations), bool, len(segmentations))
    if not (is_list | is_dict | is_none).all():
        return None
    dict_index = np.flatnonzero(is_dict)
    if not all("counts" in segmentations[i] and "size" in segmentations[i] for i in dict_index.tolist()):
        return None
    list_index = np.flatnonzero(is_list)
    lists = [segmentations[i] for i in list_index.tolist()]
    polygons = list(chain.from_iterable(lists))
    if not _only(polygons, list):
        return None
    lengths = np.fromiter(map(len, polygons), np.int64, len(polygons))
    if (lengths < 6).any() or (lengths % 2).any():
        return None
    types = set(map(type, chain.from_iterable(polygons)))
    if not types <= {int, float}:
        return None
    coords = np.fromiter(chain.from_iterable(polygons), np.float64, int(lengths.sum()))
    if not np.isfinite(coords).all():
        return None
    polygon_counts = np.fromiter(map(len, lists), np.int64, len(lists))
    polygon_offsets = _offsets(polygon_counts)
    coord_offsets = _offsets(lengths)
    float_lists = np.ones(len(lists), dtype=bool)
    if int in types:  # polygons with int coordinates stay as they are (pickled), so they come back as ints
        float_polygon = np.fromiter((all(type(v) is float for v in p) for p in polygons), bool, len(polygons))
        not_float = _offsets((~float_polygon).astype(np.int64))
        float_lists = not_float[polygon_offsets[1:]] == not_float[polygon_offsets[:-1]]
    kinds[list_index[float_lists]] = 1
    objects_at = np.flatnonzero((kinds == 0) & ~is_none)
    kinds[objects_at] = 2
    object_index = np.full(len(segmentations), -1, dtype=np.int64)
    object_index[objects_at] = np.arange(len(objects_at))
    objects = ObjectColumn([segmentations[i] for i in objects_at.tolist()])
    per_annotation = np.zeros(len(segmentations), dtype=np.int64)
    if float_lists.all():
        per_annotation[list_index] = polygon_counts
    else:  # the polygons of the float lists only, in annotation order
        kept_lists = np.flatnonzero(float_lists)
        list_polygon_offsets, polygon_ids = ragged_take(polygon_offsets, np.arange(len(polygons)), kept_lists)
        coord_offsets, coords = ragged_take(coord_offsets, coords, polygon_ids)
        per_annotation[list_index[kept_lists]] = np.diff(list_polygon_offsets)
    return SegmentationColumn(kinds, _offsets(per_annotation), coord_offsets, coords, object_index, objects)


def coco_record_store(images: list[dict], annotations: list[dict], image_dir: Path, source: str,
                      with_masks: bool, category_id_to_label: dict[Any, int], known_ids: set,
                      report: DatasetReport) -> RecordStore | None:
    """The records of a COCO json's ``images`` and ``annotations`` as columns.

    Args:
        images: the json's ``images`` records.
        annotations: its ``annotations`` records.
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
    ids, names = _column(images, "id"), _column(images, "file_name")
    heights, widths = _column(images, "height"), _column(images, "width")
    if ids is None or names is None or heights is None or widths is None:
        return None
    if not (_only(ids, int) and _only(names, str) and _only(heights, int) and _only(widths, int)) or not all(names):
        return None
    if not _only(known_ids, int) or not _only(category_id_to_label, int):
        return None
    try:
        image_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        sizes = np.asarray([heights, widths], dtype=np.int64).T.reshape(-1, 2)
    except OverflowError:
        return None
    if (sizes <= 0).any():
        return None
    by_id = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[by_id]
    if (np.diff(sorted_ids) == 0).any():
        return None

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
    if not (_only(bboxes, list) and all(len(box) == 4 for box in bboxes)):
        return None
    flat_boxes = list(chain.from_iterable(bboxes))
    if not _only(flat_boxes, int, float):
        return None
    try:
        ann_images = np.asarray(ann_image_ids, dtype=np.int64).reshape(-1)
        categories = np.asarray(category_ids, dtype=np.int64).reshape(-1)
        iscrowd = np.asarray(crowd, dtype=np.int64).reshape(-1)
    except OverflowError:
        return None
    xywh = np.asarray(flat_boxes, dtype=np.float64).reshape(-1, 4)
    area = np.asarray(areas, dtype=np.float64).reshape(-1)
    del flat_boxes, bboxes
    if not (np.isfinite(xywh).all() and np.isfinite(area).all() and (area >= 0).all()):
        return None
    if not np.isin(iscrowd, (0, 1)).all():
        return None
    position = np.minimum(np.searchsorted(sorted_ids, ann_images), max(len(sorted_ids) - 1, 0))
    if len(ann_images) and (not len(sorted_ids) or (sorted_ids[position] != ann_images).any()):
        return None  # annotations of absent images
    known = np.asarray(sorted(known_ids), dtype=np.int64)
    if len(categories) and not np.isin(categories, known).all():
        return None  # unknown category ids
    image_of = by_id[position] if len(ann_images) else np.zeros(0, dtype=np.int64)
    segmentation_column = None
    if with_masks:
        segmentation_column = _segmentations([annotation.get("segmentation") for annotation in annotations])
        if segmentation_column is None:
            return None

    # group by image in file order, skip the categories not chosen (counted as the loop does)
    order = np.argsort(image_of, kind="stable")
    chosen_ids = np.asarray(sorted(category_id_to_label), dtype=np.int64)
    chosen = np.isin(categories[order], chosen_ids)
    wheres = [f"{source}: image {image_id} ({name})" for image_id, name in zip(ids, names)]
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
        image_ids, StringColumn(_join_paths(image_dir, names)), sizes, StringColumn(wheres),
        _offsets(counts), boxes, labels.astype(np.int64),
        {"iscrowd": iscrowd[keep], "area": area[keep].astype(np.float32)},
        segmentation_column.take(keep) if segmentation_column is not None else None)
