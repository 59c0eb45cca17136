"""COCO-format json datasets (instances_*.json): boxes, categories, crowd flags, masks, keypoints.

Conventions at this edge:

* COCO boxes are ``[x, y, width, height]`` with ``(x, y)`` the top-left corner, in continuous
  pixel coordinates; detkit's xyxy is ``[x, y, x + width, y + height]`` (no +1).
* Category ids are sparse (1..90 for COCO's 80 classes). Labels are the categories sorted by id
  and numbered 0, 1, ... (as detectron2 and mmdetection do); ``label_to_category_id`` maps back
  for results files. ``class_names`` may pick a subset and an order instead.
* Crowd annotations (``iscrowd: 1``, one RLE over a group of objects) are kept with
  ``iscrowd [N] int64`` = 1 in the target, because COCO evaluation needs them (detections that
  fall on a crowd region are ignored, not counted false). Training must not use them as objects:
  detkit's training pipelines drop them (``drop_crowd=True`` in
  :func:`detkit.data.transforms.rcnn_train_transforms` and the others). Nothing is dropped here.
* ``area [N]`` float32 in the target is each annotation's ``area`` field (where absent, the area
  of its segmentation, else of its box): for instance annotations the *segment* area, which COCO
  evaluation's small / medium / large ranges measure (not the box area), so a ground truth built
  from the targets (:func:`detkit.evaluation.coco_eval.target_to_coco`) scores as the json does
  (float32, not float64, so that targets can move to any device; only an area within 1e-7
  relative of a range border could round across it).
* Masks (``with_masks=True``) are decoded with ``pycocotools.mask`` from polygons, uncompressed
  RLE (crowd) or compressed RLE, exactly as ``COCO.annToMask`` does: ``masks [N, H, W]`` uint8.
* Keypoints (``with_keypoints=True``, person_keypoints_*.json and the keypoint shapes data):
  ``keypoints [N, K, 3]`` float32 ``(x, y, visibility)`` from each annotation's flat
  ``keypoints`` list ``[x1, y1, v1, ...]`` (COCO: v = 0 not labelled, 1 labelled but hidden,
  2 visible), ``K`` the longest ``categories[].keypoints`` name list; an annotation without
  keypoints gets ``K`` zero rows. The dataset's ``keypoint_names``, ``skeleton`` (0-based pairs,
  COCO's are 1-based) and ``keypoint_sigmas`` (a category's ``keypoint_sigmas`` list, detkit's
  extension for OKS; None: pycocotools' COCO-person defaults) come from the categories.
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .base import DetectionDataset, ImageRecord, Transforms
from .coco_columns import ImageColumns, coco_record_store, list_of_dicts, read_coco_json
from .coco_parallel import REFUSED, parse_coco_in_parts
from .forked import run_forked
from .parsing import parse_box, parse_number, require_keys, require_list_of_dicts
from .records import RecordStore, release_freed_memory
from .validation import DatasetError, DatasetReport

logger = logging.getLogger(__name__)

__all__ = ["CocoDetection", "coco_segmentation_to_mask", "group_annotations_by_image"]

_MAX_QUOTED = 5  # ids an error quotes

# Annotation files at least this large are parsed in a forked child (detkit.data.forked): the
# parsed json's Python objects (~7x the file) never enter the loading process.
PARSE_IN_CHILD_MIN_BYTES = 32 << 20


def _worth_a_child(annotation_file: Path) -> bool:
    try:
        return annotation_file.stat().st_size >= PARSE_IN_CHILD_MIN_BYTES
    except OSError:
        return False  # absent: the in-process reader raises the worded error


def coco_segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Rasterise one COCO segmentation to a ``[height, width]`` uint8 {0, 1} mask.

    Args:
        segmentation: a list of polygons ``[[x1, y1, x2, y2, ...], ...]``, an uncompressed RLE
            ``{"size": [h, w], "counts": [int, ...]}`` or a compressed RLE (``counts`` str/bytes).
        height: image height in pixels.
        width: image width in pixels.
    """
    if isinstance(segmentation, list):  # polygons: one RLE per polygon, merged (union)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed RLE
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise TypeError(f"unknown COCO segmentation type {type(segmentation).__name__}")
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips NumPy 2's `copy=` deprecation; the result is correct.
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def _area_of(annotation: dict, height: int, width: int, where: str) -> float:
    """An annotation's ``area`` field; where absent, its segmentation's area (else its box's)."""
    area = annotation.get("area")
    if area is None:
        segmentation = annotation.get("segmentation")
        if segmentation:
            return float(coco_segmentation_to_mask(segmentation, height, width).sum())
        _, _, w, h = annotation["bbox"]
        return float(w) * float(h)
    try:
        value = float(area)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: annotation {annotation.get('id')} has area {area!r}, not a number") from None
    if not np.isfinite(value) or value < 0:
        raise DatasetError(f"{where}: annotation {annotation.get('id')} has area {area!r}; an area is a finite "
                           "number >= 0")
    return value


def _check_id(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DatasetError(f"{what} must be an int (or str), got {value!r}")


def group_annotations_by_image(
    images: Sequence[dict], annotations: Sequence[dict], source: str
) -> dict[Any, list[dict]]:
    """Group annotations by ``image_id``, refusing ids that would silently merge or vanish.

    Raises:
        DatasetError: an image record without an ``id`` or an annotation without an
            ``image_id`` (index named); two image records share an id (their annotations would
            be merged), or annotations name image ids that are not in ``images`` (they would be
            dropped); one line naming ``source``, the ids, the count and up to 5 annotation ids.
    """
    for index, image in enumerate(images):
        require_keys(image, ("id",), f"{source}: images[{index}]")
        _check_id(image["id"], f"{source}: images[{index}] 'id'")
    for index, annotation in enumerate(annotations):
        what = f"{source}: annotations[{index}] (id {annotation.get('id')})"
        require_keys(annotation, ("image_id",), what)
        _check_id(annotation["image_id"], f"{what} 'image_id'")
    counts = Counter(image["id"] for image in images)
    duplicated = sorted((image_id for image_id, count in counts.items() if count > 1), key=str)
    if duplicated:
        more = f" and {len(duplicated) - _MAX_QUOTED} more" if len(duplicated) > _MAX_QUOTED else ""
        raise DatasetError(f"{source}: duplicate image ids {duplicated[:_MAX_QUOTED]}{more} in 'images' "
                           "(each image record needs its own id; their annotations would be merged)")
    by_image: dict[Any, list[dict]] = {image_id: [] for image_id in counts}
    orphans = []
    for annotation in annotations:
        if annotation["image_id"] in by_image:
            by_image[annotation["image_id"]].append(annotation)
        else:
            orphans.append(annotation)
    if orphans:
        quoted = ", ".join(f"annotation {a.get('id')} (image_id {a['image_id']})" for a in orphans[:_MAX_QUOTED])
        more = ", ..." if len(orphans) > _MAX_QUOTED else ""
        raise DatasetError(f"{source}: {len(orphans)} annotations name image ids not in 'images', e.g. "
                           f"{quoted}{more} (a subset of a file must drop their annotations too)")
    return by_image


def _read_categories(document: dict, source: str) -> list[dict]:
    """The ``categories`` records sorted by id, each with an int ``id`` and a str ``name``, both unique.

    Raises:
        DatasetError: no ``categories`` list, a record without ``id`` / ``name``, or a duplicate
            id or name (labels would be ambiguous); the file and record named.
    """
    categories = require_list_of_dicts(document, "categories", source)
    for index, category in enumerate(categories):
        what = f"{source}: categories[{index}]"
        require_keys(category, ("id", "name"), what)
        parse_number(category["id"], "'id'", what, integer=True)
        if not isinstance(category["name"], str):
            raise DatasetError(f"{what}: 'name' must be a string, got {category['name']!r}")
    for key in ("id", "name"):
        repeated = sorted((v for v, n in Counter(c[key] for c in categories).items() if n > 1), key=str)
        if repeated:
            raise DatasetError(f"{source}: duplicate category {key}s {repeated[:_MAX_QUOTED]} in 'categories' "
                               "(labels would be ambiguous)")
    return sorted(categories, key=lambda category: category["id"])


def _keypoint_layout(
    categories: list[dict], source: str
) -> tuple[list[str] | None, list[tuple[int, int]], list[float] | None]:
    """``(keypoint_names, skeleton, keypoint_sigmas)`` of the json's categories (module docstring):
    the longest ``keypoints`` name list, the union of the skeletons (made 0-based) and the first
    ``keypoint_sigmas`` given (checked to hold one positive number per keypoint)."""
    names: list[str] | None = None
    skeleton: list[tuple[int, int]] = []
    sigmas: list[float] | None = None
    for category in categories:
        what = f"{source}: category {category['id']} ({category['name']})"
        listed = category.get("keypoints")
        if listed is not None:
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise DatasetError(f"{what}: 'keypoints' must be a list of keypoint names, got {str(listed)[:60]}")
            if names is None or len(listed) > len(names):
                names = list(listed)
        for pair in category.get("skeleton") or []:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) and i >= 1 for i in pair)):
                raise DatasetError(f"{what}: 'skeleton' must be 1-based keypoint index pairs, got {str(pair)[:60]}")
            edge = (pair[0] - 1, pair[1] - 1)
            if edge not in skeleton:
                skeleton.append(edge)
        if sigmas is None and category.get("keypoint_sigmas") is not None:
            sigmas = [float(v) for v in category["keypoint_sigmas"]]
    count = len(names or [])
    if sigmas is not None and (len(sigmas) != count or min(sigmas, default=1.0) <= 0):
        raise DatasetError(f"{source}: 'keypoint_sigmas' must hold one positive number per keypoint ({count}), "
                           f"got {sigmas[:_MAX_QUOTED]}")
    bad = [edge for edge in skeleton if max(edge) >= count]
    if bad:
        raise DatasetError(f"{source}: 'skeleton' pairs {[[a + 1, b + 1] for a, b in bad][:_MAX_QUOTED]} name "
                           f"keypoints beyond the {count} listed")
    return names, skeleton, sigmas


def _parse_keypoints(values: Any, num_keypoints: int, what: str) -> np.ndarray:
    """One annotation's flat ``[x, y, v] * K`` list as ``[K, 3]`` float32 (zeros when absent)."""
    if values is None:
        return np.zeros((num_keypoints, 3), dtype=np.float32)
    array = np.asarray(values, dtype=np.float64) if isinstance(values, list) else np.zeros(0)
    if array.ndim != 1 or len(array) != 3 * num_keypoints or not np.isfinite(array).all():
        raise DatasetError(f"{what}: 'keypoints' must be {3 * num_keypoints} finite numbers "
                           f"([x, y, v] for each of the {num_keypoints} keypoints), got {str(values)[:60]}")
    return array.reshape(num_keypoints, 3).astype(np.float32)


def _image_size(image: dict, what: str) -> tuple[int, int]:
    """``(height, width)`` of an image record, checked to be positive integers."""
    require_keys(image, ("file_name", "height", "width"), what)
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        raise DatasetError(f"{what}: 'file_name' must be a non-empty string, got {image['file_name']!r}")
    return (int(parse_number(image["height"], "'height'", what, integer=True, positive=True)),
            int(parse_number(image["width"], "'width'", what, integer=True, positive=True)))


def _check_segmentation(segmentation: Any, what: str) -> None:
    """A COCO segmentation's structure (polygons or RLE), checked before pycocotools sees it."""
    if segmentation is None:
        return
    if isinstance(segmentation, list):
        for polygon in segmentation:
            coordinates = np.asarray(polygon) if isinstance(polygon, list) else np.zeros(0)
            if coordinates.ndim != 1 or len(coordinates) < 6 or len(coordinates) % 2:
                raise DatasetError(f"{what}: 'segmentation' polygons must be lists of >= 3 x, y pairs, "
                                   f"got {str(polygon)[:60]}")
            if coordinates.dtype.kind not in "iuf" or not np.isfinite(coordinates).all():
                raise DatasetError(f"{what}: 'segmentation' polygon coordinates must be finite numbers, "
                                   f"got {str(polygon)[:60]}")
    elif isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise DatasetError(f"{what}: an RLE 'segmentation' needs 'counts' and 'size' (has {sorted(segmentation)})")
    else:
        raise DatasetError(f"{what}: 'segmentation' must be polygons (a list) or an RLE (an object), "
                           f"got {type(segmentation).__name__}")


class CocoDetection(DetectionDataset):
    """A detection dataset from a COCO instances json and a folder of images.

    Args:
        image_dir: folder holding the images; each image's ``file_name`` is relative to it.
        annotation_file: the COCO json.
        transforms: ``(image ndarray, target) -> (image tensor, target)``; see
            :mod:`detkit.data.transforms` (training pipelines drop crowd boxes there).
        with_masks: add ``masks [N, H, W]`` uint8 decoded from the segmentations.
        class_names: category names to use, in label order; must be a subset of the json's
            categories (annotations of the other categories are skipped and counted). ``None``:
            every category, sorted by id.
        skip_empty: leave out images with no annotation left after the checks. Default keeps them
            with empty targets (background-only images are valid training and evaluation data).
        check_files: check every image file exists now; ``False`` for annotation-only use with
            :meth:`get_target` (e.g. evaluation ground truth without pixels).
        verify_images: read every image header now (catches corrupt files before training).
        with_keypoints: add ``keypoints [N, K, 3]`` float32 (module docstring); the json's
            categories must name their keypoints.

    Attributes:
        class_names: names of labels ``0 .. C-1``.
        label_to_category_id: label -> COCO category id; ``category_id_to_label`` its inverse.
        load_report: the clipping and dropping counts (logged once at load).

    Raises:
        FileNotFoundError: the json does not exist.
        DatasetError: the file is not valid json (truncated: line and column named); it is not
            an object with ``images``, ``annotations`` and ``categories`` lists; a record lacks
            a required key or holds a value of the wrong kind (a ``bbox`` that is not four finite
            numbers, a non-positive ``height``, ``iscrowd`` not 0 / 1, a malformed
            ``segmentation``); an annotation names a category id the json does not define, or a
            requested class name is not among its categories, or two images or categories share
            an id, or annotations name image ids that no image has. One line naming the file and
            the record (image id, annotation id or list index).
        ImageReadError: an image file does not exist (``check_files``).
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        *,
        transforms: Transforms | None = None,
        with_masks: bool = False,
        class_names: Sequence[str] | None = None,
        skip_empty: bool = False,
        check_files: bool = True,
        verify_images: bool = False,
        with_keypoints: bool = False,
    ) -> None:
        annotation_file = Path(annotation_file)
        image_dir = Path(image_dir)
        source = str(annotation_file)
        self.with_masks = with_masks
        report = DatasetReport(source)
        collecting = gc.isenabled()
        gc.disable()  # millions of parsed containers would trigger full collections, for nothing
        try:
            loaded = None
            if not with_keypoints and _worth_a_child(annotation_file):
                loaded = self._read_in_children(annotation_file, image_dir, source, with_masks, class_names, report)
            if loaded is not None:  # the columns, built in children that held the parsed json
                records, chosen, report = loaded
            else:
                records, chosen = self._read(annotation_file, image_dir, source, with_masks, with_keypoints,
                                             class_names, report)
        finally:
            if collecting:
                gc.enable()
        super().__init__(
            records,
            [category["name"] for category in chosen],
            source,
            transforms=transforms,
            label_to_category_id={label: category["id"] for label, category in enumerate(chosen)},
            check_files=check_files,
            verify_images=verify_images,
            skip_empty=skip_empty,
            report=report,
        )
        release_freed_memory()  # the parsed json and the buffers before the checks are gone: give the heap back

    def _read_in_children(self, annotation_file: Path, image_dir: Path, source: str, with_masks: bool,
                          class_names: Sequence[str] | None, report: DatasetReport
                          ) -> tuple[RecordStore, list[dict], DatasetReport] | None:
        """The columns of a large file, parsed in forked children (in two halves at once where
        :func:`~detkit.data.coco_parallel.parse_coco_in_parts` can split it, else in one child);
        ``None``: read it in this process (a record the columns refuse, no fork)."""
        document = parse_coco_in_parts(annotation_file, with_masks, image_dir, source)
        if document == REFUSED:
            return None
        if document is not None:
            records, chosen = self._read(annotation_file, image_dir, source, with_masks, False, class_names, report,
                                         document=document)
            return (records, chosen, report) if isinstance(records, RecordStore) else None
        loaded = run_forked(lambda: self._read_columns(annotation_file, image_dir, source, with_masks, class_names,
                                                       report))
        if loaded is None:
            return None
        records, chosen, child_report, attributes = loaded
        self.__dict__.update(attributes)
        return records, chosen, child_report

    def _read_columns(self, annotation_file: Path, image_dir: Path, source: str, with_masks: bool,
                      class_names: Sequence[str] | None, report: DatasetReport
                      ) -> tuple[RecordStore, list[dict], DatasetReport, dict[str, Any]] | None:
        """:meth:`_read` as :func:`~detkit.data.forked.run_forked` runs it in a child: the store, the
        chosen categories, the report and the attributes ``_read`` set; ``None`` when the file
        needs the record loop (the parent then reads it itself, and words any error)."""
        records, chosen = self._read(annotation_file, image_dir, source, with_masks, False, class_names, report)
        if not isinstance(records, RecordStore):
            return None
        attributes = {name: getattr(self, name)
                      for name in ("category_id_to_label", "keypoint_names", "skeleton", "keypoint_sigmas")}
        return records, chosen, report, attributes

    def _read(self, annotation_file: Path, image_dir: Path, source: str, with_masks: bool, with_keypoints: bool,
              class_names: Sequence[str] | None, report: DatasetReport, document: dict | None = None
              ) -> tuple[RecordStore | list[ImageRecord] | None, list[dict]]:
        """``(records, chosen categories)``; sets ``category_id_to_label``. The json's Python
        objects live only in this call: the records are columns (:mod:`detkit.data.records`).
        ``document``: the file already parsed, its annotations as columns
        (:func:`~detkit.data.coco_parallel.parse_coco_in_parts`); records ``None`` when the
        columns refuse it."""
        data = read_coco_json(annotation_file) if document is None else document
        images = data["images"] if document is not None and isinstance(data.get("images"), ImageColumns) else (
            list_of_dicts(data, "images") or require_list_of_dicts(data, "images", source))
        if isinstance(data, dict) and "annotations" not in data and "images" in data:
            # An image-info file (COCO's test-dev, a folder to run on): images, no ground truth.
            logger.warning("%s has no 'annotations' list: an image-info file (like COCO test-dev), "
                           "its %d images have no ground truth", source, len(data["images"] or []))
            data = {**data, "annotations": []}
        annotations = data["annotations"] if document is not None else (
            list_of_dicts(data, "annotations") or require_list_of_dicts(data, "annotations", source))

        categories = _read_categories(data, source)
        name_to_id = {category["name"]: category["id"] for category in categories}
        known_ids = set(name_to_id.values())
        if class_names is None:
            chosen = categories
        else:
            unknown = [name for name in class_names if name not in name_to_id]
            if unknown:
                raise DatasetError(
                    f"{source}: class names {unknown} are not categories of this file " f"(it has {sorted(name_to_id)})"
                )
            chosen = [next(c for c in categories if c["name"] == name) for name in class_names]
        self.category_id_to_label = {category["id"]: label for label, category in enumerate(chosen)}
        self.keypoint_names, self.skeleton, self.keypoint_sigmas = _keypoint_layout(categories, source)
        num_keypoints = len(self.keypoint_names or [])
        if with_keypoints and not num_keypoints:
            raise DatasetError(f"{source}: with_keypoints=True but no category names keypoints "
                               "('categories[].keypoints')")

        # The bulk columns take boxes, labels, crowd flags, areas and segmentations; keypoints go
        # through the record reader (DetectionDataset packs its records into a RecordStore too).
        store = None if with_keypoints else coco_record_store(
            images, annotations, image_dir, source, with_masks, self.category_id_to_label, known_ids, report)
        if store is not None or document is not None:
            return store, chosen
        # Something the columns do not take as it is (string ids, 'ignore' flags, absent areas, a
        # malformed record, keypoints): the record-by-record reader, which also words every error.
        records = self._read_records(images, annotations, image_dir, source, with_masks, with_keypoints,
                                     num_keypoints, known_ids, report)
        return records, chosen

    def _read_records(self, images: list[dict], annotations: list[dict], image_dir: Path, source: str,
                      with_masks: bool, with_keypoints: bool, num_keypoints: int, known_ids: set,
                      report: DatasetReport) -> list[ImageRecord]:
        annotations_by_image = group_annotations_by_image(images, annotations, source)
        records: list[ImageRecord] = []
        for index, image in enumerate(images):
            height, width = _image_size(image, f"{source}: images[{index}] (id {image['id']})")
            where = f"{source}: image {image['id']} ({image['file_name']})"
            boxes, labels, crowd, areas, segmentations, keypoints = [], [], [], [], [], []
            for annotation in annotations_by_image.get(image["id"], []):
                what = f"{where}: annotation {annotation.get('id')}"
                require_keys(annotation, ("category_id", "bbox"), what)
                category_id = annotation["category_id"]
                _check_id(category_id, f"{what}: 'category_id'")
                if category_id not in known_ids:
                    raise DatasetError(
                        f"{where}: annotation {annotation.get('id')} has category_id {category_id}, which is "
                        f"not in the file's categories {sorted(known_ids)}"
                    )
                if category_id not in self.category_id_to_label:
                    report.add("annotations of classes not in class_names skipped", f"{where}: {category_id}")
                    continue
                if annotation.get("ignore", 0):
                    report.add("annotations marked 'ignore' skipped", f"{where}: annotation {annotation.get('id')}")
                    continue
                # COCO: top-left corner and size.
                x, y, w, h = parse_box(annotation["bbox"], "'bbox'", what, "[x, y, width, height]")
                boxes.append([x, y, x + w, y + h])
                labels.append(self.category_id_to_label[category_id])
                iscrowd = parse_number(annotation.get("iscrowd", 0), "'iscrowd'", what, integer=True)
                if iscrowd not in (0, 1):
                    raise DatasetError(f"{what}: 'iscrowd' must be 0 or 1, got {annotation['iscrowd']!r}")
                crowd.append(int(iscrowd))
                if with_masks or annotation.get("area") is None:
                    _check_segmentation(annotation.get("segmentation"), what)
                areas.append(_area_of(annotation, height, width, where))
                segmentations.append(annotation.get("segmentation"))
                if with_keypoints:
                    keypoints.append(_parse_keypoints(annotation.get("keypoints"), num_keypoints, what))
            box_fields = {"iscrowd": np.asarray(crowd, dtype=np.int64), "area": np.asarray(areas, dtype=np.float32)}
            if with_keypoints:
                box_fields["keypoints"] = np.asarray(keypoints, dtype=np.float32).reshape(-1, num_keypoints, 3)
            records.append(
                ImageRecord(
                    image_id=image["id"],
                    path=image_dir / image["file_name"],
                    size=(height, width),
                    boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                    labels=np.asarray(labels, dtype=np.int64),
                    box_fields=box_fields,
                    segmentations=segmentations if with_masks else None,
                    where=where,
                )
            )
        return records

    def _decode_masks(self, record: ImageRecord, size: tuple[int, int]) -> np.ndarray | None:
        if not self.with_masks:
            return None
        height, width = size
        masks = np.zeros((len(record.boxes), height, width), dtype=np.uint8)
        for index, segmentation in enumerate(record.segmentations or []):
            if segmentation is None or (isinstance(segmentation, list) and not segmentation):
                # No segmentation: the box itself (as detectron2 does for box-only annotations).
                x1, y1, x2, y2 = np.round(record.boxes[index]).astype(int)
                masks[index, y1:y2, x1:x2] = 1
            else:
                try:
                    masks[index] = coco_segmentation_to_mask(segmentation, height, width)
                except (TypeError, ValueError, KeyError) as error:  # pycocotools on a malformed RLE
                    raise DatasetError(f"{record.where}: box {index}: cannot decode its 'segmentation' "
                                       f"({type(error).__name__}: {error})") from None
        return masks
