"""Write the neutral form as a COCO instances json, in COCO's own folder layout.

::

    <out>/annotations/instances_<split>.json
    <out>/<split>/<file_name>                 images (copied or linked), sub-folders kept

Box convention: COCO's ``bbox`` is ``[x, y, width, height]`` in continuous pixels, ``(x, y)``
the top-left corner: ``x = x1``, ``width = x2 - x1`` (no +1), the inverse of
:class:`~detkit.data.CocoDetection`'s ``x2 = x + width``. Each number is the shortest decimal
that gives back the same float32 box through that reader (``[10.3, 5, 5.1, 2]`` stays so).

Records: ``images`` keep a COCO source's ids (else 1, 2, ...), ``categories`` its category ids
when they increase in label order (else ``label + 1``: COCO readers number the categories by
sorted id, so ids out of label order would reorder the classes), ``annotations`` are numbered
1, 2, ... with ``area`` (a COCO source's own ``area``, else the box's), ``iscrowd`` and, where
the source has one, its ``segmentation`` (polygons or RLE, unchanged). COCO has no ``difficult`` flag: difficult boxes are written as
ordinary annotations, and counted in the report.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path, PurePosixPath

import numpy as np

from .annotations import ConversionReport, DetectionAnnotations, ImageAnnotations, format_number, shortest_number
from .files import ImageMode, place_image, require_free

__all__ = ["coco_box", "write_coco"]


def _extent(start: int | float, end: np.float32) -> int | float:
    """The shortest size ``s`` for which the reader's ``float32(start + s)`` is ``end``."""
    return shortest_number(float(end) - float(start), lambda size: np.float32(start + size) == end)


def coco_box(box: np.ndarray) -> list[int | float]:
    """``[x, y, width, height]`` of one ``[4]`` float32 xyxy box (the module docstring's rounding)."""
    x1, y1, x2, y2 = (np.float32(value) for value in box)
    x, y = format_number(x1), format_number(y1)
    return [x, y, _extent(x, x2), _extent(y, y2)]


def _segmentation(value: object) -> object:
    """A raw segmentation as json: a compressed RLE's ``bytes`` counts as ascii text."""
    if isinstance(value, dict) and isinstance(value.get("counts"), bytes):
        return {**value, "counts": value["counts"].decode("ascii")}
    return value


def _image_ids(images: list[ImageAnnotations]) -> list[int]:
    """The source's ids when they are distinct ints (COCO), else 1, 2, ..."""
    ids = [image.image_id for image in images]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids):
        return ids  # type: ignore[return-value]
    return list(range(1, len(images) + 1))


def write_coco(annotations: DetectionAnnotations, out_dir: str | Path, split: str = "train", *,
               images: ImageMode = "copy", overwrite: bool = False) -> ConversionReport:
    """Write ``annotations`` as ``<out_dir>/annotations/instances_<split>.json`` + ``<out_dir>/<split>/``.

    Args:
        annotations: the split in the neutral form.
        out_dir: the destination folder (created).
        split: the split's name.
        images: ``"copy"`` the image files or ``"link"`` them (symlinks to the source files).
        overwrite: replace a json of this split that is already there.

    Returns:
        The report (counts written; difficult flags COCO cannot hold).

    Raises:
        ConversionError: the json exists and ``overwrite`` is false.
        FileNotFoundError: a source image is missing.
    """
    out_dir = Path(out_dir)
    json_path = out_dir / "annotations" / f"instances_{split}.json"
    require_free([json_path], overwrite, f"split {split!r}")
    report = ConversionReport.start(annotations, "coco", out_dir, split)
    category_ids = annotations.category_ids
    if not category_ids or any(a >= b for a, b in itertools.pairwise(category_ids)):
        # COCO readers number the categories by sorted id: ids out of label order would reorder the classes.
        category_ids = [label + 1 for label in range(len(annotations.class_names))]
    categories = [{"id": int(category_id), "name": name, "supercategory": ""}
                  for category_id, name in zip(category_ids, annotations.class_names)]
    records, objects = [], []
    for image, image_id in zip(annotations.images, _image_ids(annotations.images)):
        place_image(image.image_path, out_dir / split / PurePosixPath(image.file_name), images)
        records.append({"id": image_id, "file_name": image.file_name, "height": image.height, "width": image.width})
        crowd, difficult = image.crowd_flags(), image.difficult_flags()
        for index in range(image.num_boxes):
            bbox = coco_box(image.boxes[index])
            area = image.areas[index] if image.areas is not None else np.float32(bbox[2]) * np.float32(bbox[3])
            record = {"id": len(objects) + 1, "image_id": image_id,
                      "category_id": int(category_ids[int(image.labels[index])]), "bbox": bbox,
                      "area": format_number(area), "iscrowd": int(crowd[index])}
            segmentation = image.segmentation(index)
            if segmentation is not None:
                record["segmentation"] = _segmentation(segmentation)
            if difficult[index]:
                report.add("difficult flags (COCO has no difficult field: written as ordinary annotations)",
                           f"{image.file_name}: box {index}")
            objects.append(record)
    document = {
        "info": {"description": f"converted by detkit from {annotations.source_format} {annotations.source}"},
        "images": records,
        "annotations": objects,
        "categories": categories,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document) + "\n", encoding="utf-8")
    report.files.append(json_path)
    report.num_images, report.num_boxes = len(records), len(objects)
    return report
