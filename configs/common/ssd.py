"""SSD300 / SSD512 on VGG16 and SSDLite320 on MobileNetV3-Large, as functions returning fresh L() trees.

``num_classes`` counts object classes (no background). Default-box scales are fractions of the
input side, one per feature map plus one (see :mod:`detkit.models.default_boxes`); they come from
the SSD paper's Caffe models (``ssd_pascal.py``, ``ssd_coco.py``: ``min_ratio``/``max_ratio`` in
percent, the first map at half the minimum ratio), which torchvision's ssd300_vgg16 uses for COCO:

=============  =================================================================
SSD300 COCO    0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05       (min 15 %, max 90 %)
SSD300 VOC     0.10, 0.20, 0.37, 0.54, 0.71, 0.88, 1.05       (min 20 %, max 90 %)
SSD512 COCO    0.04, 0.10, 0.26, 0.42, 0.58, 0.74, 0.90, 1.06 (min 10 %, max 90 %)
SSD512 VOC     0.07, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90, 1.05 (min 15 %, max 90 %)
=============  =================================================================

SSDLite320 spreads its scales linearly from 0.2 to 0.95 (torchvision's ssdlite320 settings).

``num_classes`` and ``class_names`` are said once, at the detector node; the head takes
``Inherit("num_classes")``, so ``model.num_classes=20`` is the one override that changes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A

from configs.common.datasets import dataset_sections
from detkit.config import Inherit, L, LazyCall
from detkit.data.transforms import DetectionTransform, MinIoURandomCrop, ssd_train_transforms
from detkit.engine import CosineLR, MultiStepLR, build_optimizer, default_train
from detkit.models.backbones.ssd_vgg import SSDVGG
from detkit.models.backbones.ssdlite_mobilenet import SSDLiteMobileNetV3
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads.ssd_head import SSDHead, SSDLiteHead
from detkit.models.detectors.ssd import (
    SSD,
    SSD_VGG_PIXEL_MEAN,
    SSD_VGG_PIXEL_STD,
    SSDLITE_PIXEL_MEAN,
    SSDLITE_PIXEL_STD,
)

SSD300_SCALES_COCO = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
SSD300_SCALES_VOC = (0.10, 0.20, 0.37, 0.54, 0.71, 0.88, 1.05)
SSD512_SCALES_COCO = (0.04, 0.10, 0.26, 0.42, 0.58, 0.74, 0.90, 1.06)
SSD512_SCALES_VOC = (0.07, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90, 1.05)

# Extra aspect ratios per feature map and distances between box centres (pixels).
SSD300_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SSD512_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD512_STEPS = (8, 16, 32, 64, 128, 256, 512)
# Channels of SSDVGG's levels c3 (conv4_3), c4 (fc7), c5 (conv8_2), c6 ... (see ssd_vgg.py).
SSD_VGG_CHANNELS = {300: (512, 1024, 512, 256, 256, 256), 512: (512, 1024, 512, 256, 256, 256, 256)}
# SSDLiteMobileNetV3 (reduced tail): c4_expand, c5, then the four extra blocks.
SSDLITE_CHANNELS = (672, 480, 512, 256, 256, 128)


def _num_anchors(aspect_ratios: Sequence[Sequence[float]]) -> list[int]:
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


def ssd_vgg16(
    num_classes: int = 80,
    *,
    input_size: int = 300,
    scales: Sequence[float] = SSD300_SCALES_COCO,
    frozen_stages: int = 0,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """SSD300 (``input_size=300``, torchvision's ssd300_vgg16) or SSD512 on VGG16.

    ``frozen_stages=1`` is torchvision's default with ImageNet VGG16 weights
    (``trainable_backbone_layers=4``); without them torchvision trains everything (0).
    """
    aspect_ratios = SSD300_ASPECT_RATIOS if input_size == 300 else SSD512_ASPECT_RATIOS
    steps = SSD300_STEPS if input_size == 300 else SSD512_STEPS
    return L(SSD)(
        backbone=L(SSDVGG)(input_size=input_size, frozen_stages=frozen_stages, weights=backbone_weights),
        head=L(SSDHead)(
            in_channels=None,  # sized from the backbone
            num_anchors=_num_anchors(aspect_ratios),
            num_classes=Inherit("num_classes"),
            score_thresh=0.01,
            nms_thresh=0.45,
            pre_nms_topk=400,
            detections_per_img=200,
        ),
        default_boxes=L(DefaultBoxGenerator)(aspect_ratios=aspect_ratios, scales=tuple(scales), steps=steps),
        num_classes=num_classes,
        image_size=(input_size, input_size),
        pixel_mean=SSD_VGG_PIXEL_MEAN,
        pixel_std=SSD_VGG_PIXEL_STD,
        class_names=None if class_names is None else list(class_names),
    )


def ssdlite320_mobilenet_v3(
    num_classes: int = 80,
    *,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """torchvision's ssdlite320_mobilenet_v3_large: reduced-tail MobileNetV3-Large, 6 maps of
    2 + 2x2 boxes per cell, scores above 0.001, NMS 0.55, 300 candidates and detections."""
    aspect_ratios = ((2, 3),) * 6
    return L(SSD)(
        backbone=L(SSDLiteMobileNetV3)(reduced_tail=True, weights=backbone_weights),
        head=L(SSDLiteHead)(
            in_channels=None,  # sized from the backbone
            num_anchors=_num_anchors(aspect_ratios),
            num_classes=Inherit("num_classes"),
            score_thresh=0.001,
            nms_thresh=0.55,
            pre_nms_topk=300,
            detections_per_img=300,
        ),
        default_boxes=L(DefaultBoxGenerator)(aspect_ratios=aspect_ratios, min_ratio=0.2, max_ratio=0.95),
        num_classes=num_classes,
        image_size=(320, 320),
        pixel_mean=SSDLITE_PIXEL_MEAN,
        pixel_std=SSDLITE_PIXEL_STD,
        class_names=None if class_names is None else list(class_names),
    )


# ------------------------------------------------------------------------------------------------
# training schedules (torchvision's references/detection recipes)


def torchvision_sgd(lr: float, weight_decay: float) -> LazyCall:
    """SGD, momentum 0.9, ``weight_decay`` on every parameter (torchvision's train.py without
    ``--norm-weight-decay``: norms and biases decay too)."""
    return L(build_optimizer)(
        name="SGD", lr=lr, momentum=0.9, weight_decay=weight_decay, weight_decay_norm=weight_decay,
        weight_decay_bias=weight_decay,
    )  # fmt: skip


def ssd_120e_training(
    name: str,
    dataset: str = "coco",
    *,
    input_size: int = 300,
    root: str | None = None,
    images_per_gpu: int = 4,
    num_workers: int = 4,
) -> dict:
    """``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` for SSD300/SSD512
    on VGG16, torchvision's SSD300 recipe (references/detection/README.md, "SSD300 VGG16":
    ``--epochs 120 --lr-steps 80 110 --lr 0.002 --batch-size 4 --weight-decay 0.0005
    --data-augmentation ssd`` on 8 GPUs); outputs in runs/<name>.

    - Total batch 32 = 8 GPUs x ``images_per_gpu`` 4; SGD lr 0.002, momentum 0.9, weight decay
      5e-4 on every parameter; lr x 0.1 after epochs 80 and 110 of 120 (the epoch count runs
      through ``train.max_epochs``); linear warm-up over the first 1000 iterations from 0.001 x lr
      (torchvision warms up over ``min(1000, one epoch)``).
    - Augmentation (torchvision's ``ssd`` preset, the paper's): photometric distortion, zoom out
      (expand, ImageNet-mean fill), min-IoU random crop, flip, resize to ``input_size``
      (:func:`~detkit.data.transforms.ssd_train_transforms`); crowd boxes dropped.
    - SSD512 and VOC (VOC07+12 -> VOC2007 test) have no torchvision recipe; they use the same one.
      mmdetection's ssd300_coco is the other common reference: lr 2e-3 with a batch of 64
      (8 x 8) over the same 120 epochs (24 epochs of a 5x repeated dataset, steps 16/22).

    Other GPU counts: scale lr by ``total batch / 32`` (linear rule); epochs stay 120.

    Args:
        name: the config's name, for ``train.output_dir = runs/<name>``.
        dataset: ``"coco"`` or ``"voc"``.
        input_size: 300 or 512, the square training size.
        root: the dataset folder (default ``datasets/coco`` / ``datasets/VOCdevkit``).
        images_per_gpu: training images per process.
        num_workers: data-loading processes per process.
    """
    data = dataset_sections(
        dataset, root, train_transforms=L(ssd_train_transforms)(size=input_size), batch_size=images_per_gpu,
        num_workers=num_workers, test_batch_size=8,
    )  # fmt: skip
    return dict(
        dataloader=data["dataloader"],
        optimizer=torchvision_sgd(lr=0.002, weight_decay=5e-4),
        lr_schedule=L(MultiStepLR)(  # after epochs 80 and 110 of 120, following train.max_epochs
            milestones=None, milestone_fractions=[80 / 120, 110 / 120], by_epoch=True, warmup_iters=1000,
            warmup_factor=0.001,
        ),
        train=default_train(
            max_epochs=120, output_dir=f"runs/{name}", checkpoint_period=5000, best_metric=data["best_metric"]
        ),
    )


def ssdlite_train_transforms(size: int = 320) -> LazyCall:
    """torchvision's ``ssdlite`` preset: min-IoU random crop and flip only (no photometric
    distortion, no zoom out), then resize to ``size x size``; crowd boxes dropped."""
    return L(DetectionTransform)(
        transforms=[L(MinIoURandomCrop)(), L(A.HorizontalFlip)(p=0.5), L(A.Resize)(height=size, width=size)],
        drop_crowd=True,
    )


def ssdlite_600e_training(
    name: str, *, root: str | None = None, images_per_gpu: int = 24, num_workers: int = 4, max_epochs: int = 600
) -> dict:
    """``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` for
    SSDLite320-MobileNetV3 on COCO, torchvision's recipe (references/detection/README.md,
    "SSDlite320 MobileNetV3-Large": ``--lr-scheduler cosineannealinglr --lr 0.15 --batch-size 24
    --weight-decay 0.00004 --data-augmentation ssdlite`` on 8 GPUs); outputs in runs/<name>.

    - Total batch 192 = 8 GPUs x ``images_per_gpu`` 24; SGD lr 0.15, momentum 0.9, weight decay
      4e-5 on every parameter; cosine decay to 0 over ``max_epochs``, per epoch (torchvision's
      ``CosineAnnealingLR(T_max=epochs)``); linear warm-up over 600 iterations from 0.001 x lr
      (torchvision: ``min(1000, one epoch)``, one epoch being about 610 iterations at 192).
    - Length: 600 epochs, as this config's name says. The README's command line says
      ``--epochs 660``; pass ``train.max_epochs=660`` for that (the cosine follows the run).
    - Augmentation: :func:`ssdlite_train_transforms`.

    Other GPU counts: scale lr by ``total batch / 192`` (linear rule).

    Args:
        name: the config's name, for ``train.output_dir = runs/<name>``.
        root: the COCO folder (default ``datasets/coco``).
        images_per_gpu: training images per process.
        num_workers: data-loading processes per process.
        max_epochs: training length (and cosine period) in epochs.
    """
    data = dataset_sections(
        "coco", root, train_transforms=ssdlite_train_transforms(320), batch_size=images_per_gpu,
        num_workers=num_workers, test_batch_size=8,
    )  # fmt: skip
    return dict(
        dataloader=data["dataloader"],
        optimizer=torchvision_sgd(lr=0.15, weight_decay=4e-5),
        lr_schedule=L(CosineLR)(max_t=None, min_factor=0.0, by_epoch=True, warmup_iters=600, warmup_factor=0.001),
        train=default_train(
            max_epochs=max_epochs, output_dir=f"runs/{name}", checkpoint_period=5000, best_metric=data["best_metric"]
        ),
    )
