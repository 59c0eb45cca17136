"""Converters between COCO json, VOC xml and YOLO txt (``detkit data convert``).

* :mod:`.annotations`: the neutral in-memory form (:class:`DetectionAnnotations` of
  :class:`ImageAnnotations`: boxes xyxy float32 pixels, labels, crowd / difficult flags,
  segmentations) and the :class:`ConversionReport` of what a target format cannot hold;
* :mod:`.readers`: :func:`read_coco`, :func:`read_voc`, :func:`read_yolo` through detkit's
  dataset classes (their checks, their boxes);
* :mod:`.coco_writer`, :mod:`.voc_writer`, :mod:`.yolo_writer`: :func:`write_coco`,
  :func:`write_voc`, :func:`write_yolo`, each module stating its box convention;
* :mod:`.convert`: :func:`convert_dataset` (read + write) and :func:`write_annotations`.
"""

from .annotations import FORMATS, ConversionError, ConversionReport, DetectionAnnotations, ImageAnnotations
from .coco_writer import write_coco
from .convert import convert_dataset, write_annotations
from .files import read_class_names
from .readers import YOLO_SNAP_EPS, read_annotations, read_coco, read_voc, read_yolo
from .voc_writer import write_voc
from .yolo_writer import YOLO_DIGITS, write_yolo

__all__ = [
    "FORMATS",
    "YOLO_DIGITS",
    "YOLO_SNAP_EPS",
    "ConversionError",
    "ConversionReport",
    "DetectionAnnotations",
    "ImageAnnotations",
    "convert_dataset",
    "read_annotations",
    "read_class_names",
    "read_coco",
    "read_voc",
    "read_yolo",
    "write_annotations",
    "write_coco",
    "write_voc",
    "write_yolo",
]
