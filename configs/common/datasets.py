"""``dataloader`` sections for COCO and PASCAL VOC, read from a local folder.

Nothing is downloaded: the data live under ``datasets/`` of the working directory by default
(detectron2's convention; a symbolic link is enough), in the layouts of
:mod:`detkit.data.builtin`. The folder is ONE key, ``dataloader.root``: the training and test
datasets take ``root=Inherit("root")`` from it, the evaluator is built from the test dataset by the
engine (:func:`detkit.engine.build_evaluator`: COCO AP on the test split's own json, VOC mAP for
VOC), and YOLO's mosaic wrapper leaves the key where it is::

    python tools/train.py configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py dataloader.root=/data/coco
    python tools/train.py configs/ssd/ssd300_vgg16_120e_voc.py dataloader.root=/data/VOCdevkit

VOC's class list is one key too, ``dataloader.class_names`` (the 20 VOC classes by default; the
model's ``model.class_names`` / ``model.num_classes`` say the model's). Setting a dataset's own
``root`` (``dataloader.train.dataset.root=...``) still works and wins for that dataset.

Evaluation feeds every model the images as they are (``rcnn_test_transforms``: conversion only):
each detkit detector resizes or letterboxes itself and maps its boxes back to the input image,
which is what the COCO json and the VOC targets describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detkit.config import ConfigDict, Inherit, L, LazyCall
from detkit.data.builtin import coco_dataset, voc_dataset
from detkit.data.transforms import rcnn_test_transforms, rcnn_train_transforms
from detkit.data.voc import VOC_CLASSES
from detkit.engine import build_test_loader, build_train_loader

COCO_ROOT = "datasets/coco"
VOC_ROOT = "datasets/VOCdevkit"
# The standard VOC protocol: train on VOC2007 + VOC2012 trainval (16551 images), test on VOC2007 test (4952).
VOC07_12_TRAINVAL = ("VOC2007/trainval", "VOC2012/trainval")
VOC07_TEST = ("VOC2007/test",)
# Instance masks exist for VOC's segmentation subset only: VOC2012 seg train (1464) / val (1449).
VOC12_SEG_TRAIN = ("VOC2012/train",)
VOC12_SEG_VAL = ("VOC2012/val",)

# The metric that picks model_best.pth, per evaluator.
COCO_BEST_METRIC = "bbox/AP"
VOC_BEST_METRIC = "voc07/mAP@0.5"


def detection_dataloader(
    train_dataset: LazyCall,
    test_dataset: LazyCall,
    *,
    batch_size: int,
    num_workers: int = 4,
    test_batch_size: int = 1,
    **shared: Any,
) -> ConfigDict:
    """``dataloader.train`` (``batch_size`` images per process) and ``dataloader.test`` on two
    dataset nodes; ``shared`` values (``root=...``, ``class_names=...``) sit on the section, for
    the datasets' ``Inherit`` placeholders."""
    return ConfigDict(
        **shared,
        train=L(build_train_loader)(dataset=train_dataset, batch_size=batch_size, num_workers=num_workers),
        test=L(build_test_loader)(dataset=test_dataset, batch_size=test_batch_size, num_workers=num_workers),
    )


def coco(
    root: str = COCO_ROOT,
    *,
    train_transforms: LazyCall | None = None,
    test_transforms: LazyCall | None = None,
    batch_size: int = 2,
    num_workers: int = 4,
    test_batch_size: int = 1,
    with_masks: bool = False,
    train_split: str = "train2017",
    test_split: str = "val2017",
) -> ConfigDict:
    """``dataloader`` for COCO under ``dataloader.root`` (default ``root``): train2017 / val2017.

    Training leaves out the images without annotations (detectron2 and torchvision do) and the
    pipeline drops crowd boxes; evaluation keeps every image, and the engine's evaluator reads the
    ground truth, crowd regions and areas included, from the split's json (``bbox`` AP, plus
    ``segm`` when the model predicts masks).

    Args:
        root: the COCO folder.
        train_transforms: the training pipeline node (default: R-CNN's flip).
        test_transforms: the evaluation pipeline node (default: conversion only).
        batch_size: training images per process (per GPU).
        num_workers: loader processes per process, for each loader.
        test_batch_size: evaluation images per batch.
        with_masks: decode instance masks (Mask R-CNN).
        train_split: training split folder and json suffix.
        test_split: evaluation split.
    """

    def dataset(split: str, transforms: LazyCall, skip_empty: bool) -> LazyCall:
        return L(coco_dataset)(root=Inherit("root"), split=split, transforms=transforms, with_masks=with_masks,
                               skip_empty=skip_empty)

    return detection_dataloader(
        dataset(train_split, train_transforms or L(rcnn_train_transforms)(), True),
        dataset(test_split, test_transforms or L(rcnn_test_transforms)(), False),
        batch_size=batch_size, num_workers=num_workers, test_batch_size=test_batch_size, root=root,
    )  # fmt: skip


def voc(
    root: str = VOC_ROOT,
    *,
    train_transforms: LazyCall | None = None,
    test_transforms: LazyCall | None = None,
    batch_size: int = 2,
    num_workers: int = 4,
    test_batch_size: int = 1,
    with_masks: bool = False,
    train_sets: Sequence[str] | None = None,
    test_sets: Sequence[str] | None = None,
) -> ConfigDict:
    """``dataloader`` for PASCAL VOC under ``dataloader.root`` (default ``root``), the classes of
    ``dataloader.class_names`` (the 20 standard ones).

    Boxes: train on VOC2007 + VOC2012 trainval, test on VOC2007 test; the engine evaluates with
    :class:`~detkit.evaluation.VOCEvaluator` (IoU 0.5, difficult objects ignored): both the VOC2007
    11-point AP (``voc07/mAP@0.5``, the standard number for VOC2007 test and the one that picks
    the best checkpoint) and the all-point AP of VOC2010+ (``voc12/mAP@0.5``).

    Masks (``with_masks``): VOC has instance masks for its segmentation subset only, so train on
    VOC2012 segmentation ``train`` and test on its ``val``, scored with COCO's ``bbox`` and ``segm``
    AP (ground truth from the targets, where difficult objects count as ordinary ones; ``segm/AP50``
    is the usual VOC mAP^r at 0.5).

    Args:
        root: the ``VOCdevkit`` folder.
        train_transforms: the training pipeline node (default: R-CNN's flip).
        test_transforms: the evaluation pipeline node (default: conversion only).
        batch_size: training images per process (per GPU).
        num_workers: loader processes per process, for each loader.
        test_batch_size: evaluation images per batch.
        with_masks: instance masks (see above).
        train_sets: ``"<year folder>/<split>"`` image sets to train on (default as above).
        test_sets: image sets to evaluate on (default as above).
    """
    train_sets = train_sets or (VOC12_SEG_TRAIN if with_masks else VOC07_12_TRAINVAL)
    test_sets = test_sets or (VOC12_SEG_VAL if with_masks else VOC07_TEST)

    def dataset(image_sets: Sequence[str], transforms: LazyCall) -> LazyCall:
        return L(voc_dataset)(root=Inherit("root"), image_sets=list(image_sets), transforms=transforms,
                              with_masks=with_masks, class_names=Inherit("class_names"))

    return detection_dataloader(
        dataset(train_sets, train_transforms or L(rcnn_train_transforms)()),
        dataset(test_sets, test_transforms or L(rcnn_test_transforms)()),
        batch_size=batch_size, num_workers=num_workers, test_batch_size=test_batch_size, root=root,
        class_names=list(VOC_CLASSES),
    )  # fmt: skip


def dataset_sections(dataset: str, root: str | None = None, **kwargs: Any) -> dict:
    """``dataloader`` of :func:`coco` or :func:`voc` by name (``"coco"``, ``"voc"``), at their
    default root unless ``root`` is given; ``kwargs`` go to that factory. Also returns
    ``best_metric``: ``bbox/AP`` (COCO, and VOC with masks) or ``voc07/mAP@0.5``."""
    if dataset == "coco":
        loaders = coco(root or COCO_ROOT, **kwargs)
        best = COCO_BEST_METRIC
    elif dataset == "voc":
        loaders = voc(root or VOC_ROOT, **kwargs)
        best = COCO_BEST_METRIC if kwargs.get("with_masks") else VOC_BEST_METRIC
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'coco' or 'voc'")
    return dict(dataloader=loaders, best_metric=best)
