"""Convert a detection dataset between COCO json, VOC xml and YOLO txt: read, then write.

    report = convert_dataset("coco", "data/shapes/annotations/instances_train.json",
                             "yolo", "data/shapes_yolo", split="train")
    print(report.summary())

The source is read by detkit's own reader (:mod:`detkit.data.formats.readers`, so every check of
training applies), held in the neutral form (:mod:`detkit.data.formats.annotations`), and written
by the target's writer; what the target cannot hold is counted in the returned
:class:`~detkit.data.formats.annotations.ConversionReport`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .annotations import FORMATS, ConversionReport, DetectionAnnotations
from .coco_writer import write_coco
from .files import ImageMode
from .readers import read_annotations, source_split
from .voc_writer import write_voc
from .yolo_writer import write_yolo

__all__ = ["WRITERS", "convert_dataset", "write_annotations"]

WRITERS: dict[str, Callable[..., ConversionReport]] = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}


def write_annotations(target_format: str, annotations: DetectionAnnotations, out_dir: str | Path,
                      split: str = "train", *, images: ImageMode = "copy",
                      overwrite: bool = False) -> ConversionReport:
    """Write ``annotations`` in ``target_format`` (``"coco"``, ``"voc"``, ``"yolo"``) under ``out_dir``.

    Raises:
        ValueError: an unknown format; the writer's errors otherwise.
    """
    if target_format not in WRITERS:
        raise ValueError(f"unknown dataset format {target_format!r}; choose from {', '.join(FORMATS)}")
    return WRITERS[target_format](annotations, out_dir, split, images=images, overwrite=overwrite)


def convert_dataset(source_format: str, src: str | Path, target_format: str, dst: str | Path, *,
                    split: str | None = None, class_names: Sequence[str] | None = None,
                    image_dir: str | Path | None = None, images: ImageMode = "copy",
                    overwrite: bool = False) -> ConversionReport:
    """Read one split of ``src`` in ``source_format`` and write it in ``target_format`` under ``dst``.

    Args:
        source_format: ``"coco"``, ``"voc"`` or ``"yolo"``.
        src: the source (a COCO json or folder, a VOC folder, a YOLO folder; see
            :mod:`detkit.data.formats.readers`).
        target_format: ``"coco"``, ``"voc"`` or ``"yolo"``.
        dst: the destination folder.
        split: the split to read and write; ``None``: the source's default (``"train"``, or
            ``<name>`` of a COCO ``instances_<name>.json``).
        class_names: the class list (picks and orders COCO categories; VOC's list; YOLO's names).
        image_dir: a COCO source's image folder (found when ``None``).
        images: ``"copy"`` or ``"link"`` the image files.
        overwrite: write over a split already in ``dst``.

    Returns:
        The report: what was written, what the reader fixed, what the target cannot hold.

    Raises:
        ValueError: an unknown format; :class:`~detkit.data.DatasetError` and the other readers'
            and writers' one-line errors.
    """
    for name, value in (("source", source_format), ("target", target_format)):
        if value not in FORMATS:
            raise ValueError(f"unknown {name} format {value!r}; choose from {', '.join(FORMATS)}")
    annotations = read_annotations(source_format, src, split, class_names, image_dir)
    report = write_annotations(target_format, annotations, dst, source_split(source_format, src, split),
                               images=images, overwrite=overwrite)
    report.source = str(src)
    return report
