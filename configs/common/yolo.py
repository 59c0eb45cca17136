"""YOLOv3 / YOLOv3-tiny model trees for the experiment configs, as functions returning fresh L() trees.

:func:`yolov3_model` writes the tree of a darknet architecture from its table in
:data:`detkit.models.zoo.YOLOV3_ARCHS` (the widths the darknet importer builds from too);
:func:`yolov3_d53` and :func:`yolov3_tiny` add the training and evaluation settings of an experiment:

- letterbox preprocessing (darknet's ``letterbox_image``: keeps the aspect ratio, pads with grey),
  the usual choice for training and COCO/VOC evaluation; ``model.preprocess.resize_mode="resize"``
  (YOLOPreprocess's default) reproduces OpenCV DNN's ``blobFromImage``;
- multi-scale training: each batch draws its square input size from ``train_sizes``
  (darknet's ``random=1``: 320..608 in steps of 32 around a 416 input);
- a low score threshold (0.005) and 100 detections per image for mAP evaluation, class-aware NMS
  at IoU 0.45.

``num_classes`` (and ``class_names``) are said once, at the detector node: ``model.num_classes=20``
reaches the head (``Inherit``); YOLOv3 itself reads it from its head, so the key is config-only there.
Children call a function and then set attributes, e.g. ``model.head.ignore_thresh = 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from configs.common.datasets import dataset_sections
from detkit.config import Inherit, L, LazyCall
from detkit.data.mosaic import MosaicDataset
from detkit.data.transforms import yolo_train_transforms
from detkit.engine import MultiStepLR, build_optimizer, default_train
from detkit.models.dense_heads.yolo_head import YOLOv3Head
from detkit.models.detectors.yolo import YOLOv3
from detkit.models.necks.yolo_neck import YOLOv3Neck
from detkit.models.zoo import YOLOV3_ARCHS


def yolov3_model(
    arch: str,
    num_classes: int,
    *,
    anchors: Sequence[Sequence[float]] | None = None,
    anchor_masks: Sequence[Sequence[int]] | None = None,
    norm: str = "bn",
    ignore_thresh: float = 0.7,
    **detector_kwargs: Any,
) -> LazyCall:
    """The ``L(YOLOv3)`` tree of ``detkit.models.zoo.build_yolov3(arch, ...)`` (same arguments).

    Args:
        arch: ``"darknet53"`` (``yolov3.cfg``) or ``"tiny"`` (``yolov3-tiny.cfg``).
        num_classes: Number of object classes, said at the detector node.
        anchors: All anchors ``(w, h)`` in input pixels, small to large (default the arch's COCO ones).
        anchor_masks: Anchor indices per level, shallowest first.
        norm: Norm kind of every conv.
        ignore_thresh: The head's ignore threshold.
        **detector_kwargs: Passed to :class:`YOLOv3` (``input_size``, ``resize_mode``, ``class_names``...).
    """
    table = YOLOV3_ARCHS[arch]
    return L(YOLOv3, config_only=["num_classes"])(
        num_classes=num_classes,
        backbone=L(table.backbone)(out_levels=tuple(table.backbone_shapes), norm=norm),
        # The neck sizes itself from the backbone, the head from the neck.
        neck=L(YOLOv3Neck)(channels=table.neck_channels, depths=table.neck_depths, norm=norm),
        head=L(YOLOv3Head)(
            num_classes=Inherit("num_classes"),
            anchors=tuple(tuple(a) for a in (anchors if anchors is not None else table.anchors)),
            anchor_masks=tuple(tuple(m) for m in (anchor_masks if anchor_masks is not None else table.anchor_masks)),
            mid_channels=table.head_channels,
            norm=norm,
            ignore_thresh=ignore_thresh,
        ),
        **detector_kwargs,
    )


def yolov3_darknet53_model(num_classes: int, **kwargs: Any) -> LazyCall:
    """YOLOv3 with Darknet-53 (``yolov3.cfg``): levels p3/p4/p5, 5-conv blocks, 3 anchors each."""
    return yolov3_model("darknet53", num_classes, **kwargs)


def yolov3_tiny_model(num_classes: int, **kwargs: Any) -> LazyCall:
    """YOLOv3-tiny (``yolov3-tiny.cfg``): levels p4/p5, 3 anchors each."""
    return yolov3_model("tiny", num_classes, **kwargs)


def multi_scale_sizes(input_size: int, spread: int = 3) -> tuple[int, ...]:
    """Multiples of 32 from ``input_size - 32 * spread`` to ``input_size + 32 * spread`` (at least 32)."""
    return tuple(s for s in range(input_size - 32 * spread, input_size + 32 * spread + 1, 32) if s >= 32)


def _detector_settings(input_size: int, class_names: Sequence[str] | None, multi_scale: bool) -> dict:
    return dict(
        input_size=(input_size, input_size),
        resize_mode="letterbox",
        train_sizes=multi_scale_sizes(input_size) if multi_scale else None,
        class_names=None if class_names is None else list(class_names),
    )


def _with_test_settings(model: LazyCall) -> LazyCall:
    # mmdetection's YOLOv3 test settings (the head's defaults, stated where the recipe is).
    model.head.update(score_thresh=0.005, nms_thresh=0.45, detections_per_img=100)
    return model


def yolov3_d53(
    num_classes: int, *, input_size: int = 416, class_names: Sequence[str] | None = None, multi_scale: bool = True
) -> LazyCall:
    """YOLOv3 with Darknet-53, COCO anchors, batch norms trained."""
    return _with_test_settings(yolov3_darknet53_model(num_classes, **_detector_settings(input_size, class_names, multi_scale)))


def yolov3_tiny(
    num_classes: int, *, input_size: int = 416, class_names: Sequence[str] | None = None, multi_scale: bool = True
) -> LazyCall:
    """YOLOv3-tiny, its COCO anchors, batch norms trained."""
    return _with_test_settings(yolov3_tiny_model(num_classes, **_detector_settings(input_size, class_names, multi_scale)))


# Shrinks any YOLO experiment for tests/test_configs.py: small inputs, same structure.
TEST_OVERRIDES = ["model.input_size=(64, 64)", "model.train_sizes=(64, 96)"]


# ------------------------------------------------------------------------------------------------
# training schedules

# mmdetection's YOLOv3 losses are sums over the images of a GPU's batch (reduction="sum", 8 images
# per GPU); detkit's YOLOv3Head divides each sum by the number of images. detkit's gradients are
# thus 1 / MMDET_IMAGES_PER_GPU of mmdetection's, and its recipe maps exactly (same SGD steps) to
# lr x 8, weight decay / 8 and gradient-norm clip / 8.
MMDET_IMAGES_PER_GPU = 8


def with_mosaic(train_loader: LazyCall, output_size: int, prob: float) -> LazyCall:
    """Wrap ``train_loader``'s dataset in a :class:`~detkit.data.mosaic.MosaicDataset` drawn with
    probability ``prob`` (in place; returned). The dataset's pipeline moves to the mosaic, which
    runs it last on the combined sample; the dataset then sits at ``dataloader.train.dataset.dataset``
    and still reads its folder from ``dataloader.root``."""
    images = train_loader.dataset
    transforms, images.transforms = images.transforms, None
    train_loader.dataset = L(MosaicDataset)(dataset=images, output_size=output_size, transforms=transforms, prob=prob)
    return train_loader


def yolov3_273e_training(
    name: str,
    dataset: str = "coco",
    *,
    input_size: int = 416,
    root: str | None = None,
    images_per_gpu: int = 8,
    num_workers: int = 4,
    mosaic_prob: float = 0.0,
) -> dict:
    """``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` for YOLOv3 /
    YOLOv3-tiny, mmdetection's 273-epoch recipe (``configs/yolo/yolov3_d53_8xb8-ms-416-273e_coco.py``);
    outputs in runs/<name>.

    - Total batch 64 = 8 GPUs x ``images_per_gpu`` 8. mmdetection: SGD lr 1e-3, momentum 0.9,
      weight decay 5e-4 (every parameter), gradient norm clipped at 35, linear warm-up over 2000
      iterations from 0.1 x lr (darknet's burn-in), lr x 0.1 after epochs 218 and 246 of 273.
      Here lr 8e-3, weight decay 6.25e-5 and clip 4.375: the same SGD steps for detkit's
      per-image loss normalisation (see :data:`MMDET_IMAGES_PER_GPU`).
    - Augmentation: YOLO's (:func:`~detkit.data.transforms.yolo_train_transforms`: letterbox to
      ``input_size``, HSV gains, flip; crowd boxes dropped), optionally a mosaic on a fraction
      ``mosaic_prob`` of the samples (:func:`with_mosaic`; 0 as in YOLOv3, which had none).
      Multi-scale training is the model's: it draws each batch's size from ``model.train_sizes``
      (320..512 around 416). mmdetection's recipe uses SSD-style augmentation instead (expand,
      min-IoU crop, photometric distortion).
    - VOC (VOC07+12 -> VOC2007 test) has no mmdetection YOLOv3 recipe; it uses the same one.

    Other GPU counts: scale lr by ``total batch / 64`` (linear rule); epochs stay 273.

    Args:
        name: the config's name, for ``train.output_dir = runs/<name>``.
        dataset: ``"coco"`` or ``"voc"``.
        input_size: the letterbox size of the training pipeline.
        root: the dataset folder (default ``datasets/coco`` / ``datasets/VOCdevkit``).
        images_per_gpu: training images per process.
        num_workers: data-loading processes per process.
        mosaic_prob: fraction of training samples made as mosaics (0: none).
    """
    data = dataset_sections(
        dataset, root, train_transforms=L(yolo_train_transforms)(size=input_size), batch_size=images_per_gpu,
        num_workers=num_workers, test_batch_size=8,
    )  # fmt: skip
    if mosaic_prob > 0:
        with_mosaic(data["dataloader"]["train"], input_size, mosaic_prob)
    weight_decay = 5e-4 / MMDET_IMAGES_PER_GPU
    return dict(
        dataloader=data["dataloader"],
        optimizer=L(build_optimizer)(
            name="SGD", lr=1e-3 * MMDET_IMAGES_PER_GPU, momentum=0.9, weight_decay=weight_decay,
            weight_decay_norm=weight_decay, weight_decay_bias=weight_decay,
        ),
        lr_schedule=L(MultiStepLR)(  # after epochs 218 and 246 of 273, following train.max_epochs
            milestones=None, milestone_fractions=[218 / 273, 246 / 273], by_epoch=True, warmup_iters=2000,
            warmup_factor=0.1,
        ),
        train=default_train(
            max_epochs=273, output_dir=f"runs/{name}", checkpoint_period=5000, best_metric=data["best_metric"],
            clip_grad_norm=35.0 / MMDET_IMAGES_PER_GPU,
        ),
    )  # fmt: skip
