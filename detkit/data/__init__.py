"""Datasets, transforms, samplers and collate functions (the item format is in conventions.md).

* readers: :class:`CocoDetection`, :class:`VOCDetection`, :class:`YOLODetection`, all built on
  :class:`DetectionDataset` (shared load-time checks, :mod:`detkit.data.validation`);
* your own data: :class:`DatasetDescription` (:func:`read_description` of a yaml / json file, an
  ultralytics data.yaml or a bare folder in a common layout) and :func:`build_datasets`;
* format converters: :mod:`detkit.data.formats` (COCO json <-> VOC xml <-> YOLO txt,
  :func:`convert_dataset`; ``detkit data convert``);
* synthetic data: :func:`generate_shapes_dataset` (COCO + VOC on disk, exact masks);
* augmentation: :mod:`detkit.data.transforms` (albumentations pipelines per model family) and
  :mod:`detkit.data.mosaic` (mosaic / mixup dataset wrappers);
* batching: :func:`collate_detection`, :func:`collate_padded`, :class:`GroupedBatchSampler`,
  :class:`DistributedShardSampler`.
"""

from typing import Any

from detkit.utils.image_io import ImageReadError, image_to_tensor, read_image_rgb

from .base import DetectionDataset, ImageRecord
from .builtin import coco_dataset, voc_dataset
from .coco import CocoDetection, coco_segmentation_to_mask
from .collate import collate_detection, collate_padded
from .concat import ConcatDetection
from .description import (
    DatasetDescription, SplitLocation, build_datasets, class_names_of, described_dataset, read_description,
)
from .layouts import VOCFolderDetection, describe_folder
from .formats import (  # format converters (detkit data convert)
    ConversionReport,
    DetectionAnnotations,
    ImageAnnotations,
    convert_dataset,
    read_annotations,
    write_annotations,
)
from .mosaic import MixupDataset, MosaicDataset
from .samplers import DistributedShardSampler, GroupedBatchSampler, aspect_ratio_group_ids
from .shapes import (
    SHAPE_CLASSES,
    SHAPE_KEYPOINT_FLIP_PAIRS,
    SHAPE_KEYPOINT_SIGMA,
    SHAPE_KEYPOINTS,
    SHAPE_SKELETONS,
    ShapesDatasetPaths,
    generate_shapes_dataset,
    shapes_coco_dataset,
)
from .transforms import (
    DetectionTransform,
    MinIoURandomCrop,
    RandomHSV,
    ResizeShortestEdge,
    SSDPhotometricDistort,
    ZoomOut,
    rcnn_test_transforms,
    rcnn_train_transforms,
    ssd_test_transforms,
    ssd_train_transforms,
    yolo_test_transforms,
    yolo_train_transforms,
)
from .validation import DatasetError, DatasetReport, check_class_names
from .voc import VOC_CLASSES, VOCDetection
from .voc_instances import VOCInstanceSegmentation
from .yolo_txt import YOLODetection
from .wider_face import WIDER_FACE_FLAGS, WiderFaceDetection, parse_wider_face_gt, wider_face_dataset

__all__ = [
    # format converters (detkit data convert)
    "ConversionReport",
    "DetectionAnnotations",
    "ImageAnnotations",
    "convert_dataset",
    "read_annotations",
    "write_annotations",
    # datasets, transforms, batching
    "ConcatDetection",
    "VOCInstanceSegmentation",
    "coco_dataset",
    "voc_dataset",
    "CocoDetection",
    "DatasetDescription",
    "DatasetError",
    "DetectionDataset",
    "DetectionTransform",
    "DistributedShardSampler",
    "GroupedBatchSampler",
    "ImageReadError",
    "ImageRecord",
    "DatasetReport",
    "MinIoURandomCrop",
    "MixupDataset",
    "MosaicDataset",
    "RandomHSV",
    "ResizeShortestEdge",
    "SHAPE_CLASSES",
    "SHAPE_KEYPOINTS",
    "SHAPE_KEYPOINT_FLIP_PAIRS",
    "SHAPE_KEYPOINT_SIGMA",
    "SHAPE_SKELETONS",
    "SplitLocation",
    "SSDPhotometricDistort",
    "ShapesDatasetPaths",
    "VOCDetection",
    "VOCFolderDetection",
    "VOC_CLASSES",
    "WIDER_FACE_FLAGS",
    "WiderFaceDetection",
    "YOLODetection",
    "ZoomOut",
    "aspect_ratio_group_ids",
    "build_datasets",
    "class_names_of",
    "check_class_names",
    "coco_segmentation_to_mask",
    "collate_detection",
    "collate_padded",
    "describe_folder",
    "described_dataset",
    "generate_shapes_dataset",
    "image_to_tensor",
    "parse_wider_face_gt",
    "wider_face_dataset",
    "rcnn_test_transforms",
    "rcnn_train_transforms",
    "read_description",
    "read_image_rgb",
    "shapes_coco_dataset",
    "ssd_test_transforms",
    "ssd_train_transforms",
    "yolo_test_transforms",
    "yolo_train_transforms",
]


def __getattr__(name: str) -> Any:
    if name == "LoadReport":  # deprecated; the warning comes from detkit.data.validation
        from . import validation

        return validation.LoadReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
