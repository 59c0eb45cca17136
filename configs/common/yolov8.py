"""YOLOv8 / YOLO11 model trees and training sections for the experiment configs (fresh L() trees).

:func:`yolov8` and :func:`yolo11` give the ``L(YOLOv8)`` tree of a scale (``"n"``, ``"s"``,
``"m"``, ``"l"``, ``"x"``: ultralytics' depth / width / channel-cap rows); ``variant``, ``scale``
and ``num_classes`` are said once at the detector node and reach the parts (``Inherit``), so that
``model.scale="s"`` or ``model.num_classes=20`` changes every part. The head carries the loss with
ultralytics' default gains (box 7.5, cls 0.5, dfl 1.5) and ultralytics' validation settings
(score > 0.001, IoU 0.7, 300 detections, multi-label); ``model.head.multi_label=False`` and
``model.head.score_thresh=0.25`` are its predictor's.

:func:`yolov8_training` is ultralytics' default recipe (configs/common/ultralytics_recipe.py: SGD
with warm-up, linear decay, EMA, close-mosaic for the last 10 epochs) on COCO or VOC, with YOLO's
augmentation behind a mosaic on every sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from configs.common.datasets import dataset_sections
from configs.common.ultralytics_recipe import ultralytics_sgd_recipe
from configs.common.yolo import with_mosaic
from detkit.config import Inherit, L, LazyCall
from detkit.data.transforms import yolo_train_transforms
from detkit.engine import default_train
from detkit.models.backbones.yolov8 import YOLOv8Backbone
from detkit.models.dense_heads.yolov8_head import YOLOv8Head
from detkit.models.detectors.yolov8 import YOLOv8
from detkit.models.necks.yolov8_pan import YOLOv8PAN
from detkit.models.yolov8_loss import YOLOv8Loss

# Shrinks any YOLOv8 / YOLO11 experiment for tests/test_configs.py: a small input, same structure.
TEST_OVERRIDES = ["model.input_size=(64, 64)"]


def yolov8_model(
    variant: str,
    scale: str,
    num_classes: int,
    *,
    input_size: int = 640,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """The ``L(YOLOv8)`` tree of ``variant`` (``"yolov8"`` or ``"yolo11"``) at ``scale``.

    Args:
        variant: the blocks (C2f, or C3k2 + C2PSA and a depthwise class branch).
        scale: ``"n"`` .. ``"x"``.
        num_classes: object classes, said at the detector node.
        input_size: the square letterbox size (ultralytics' ``imgsz``).
        class_names: one name per class, or None.
    """
    return L(YOLOv8, config_only=["num_classes", "variant", "scale"])(
        num_classes=num_classes,
        variant=variant,
        scale=scale,
        backbone=L(YOLOv8Backbone)(variant=Inherit("variant"), scale=Inherit("scale")),
        # The neck sizes itself from the backbone, the head from the neck.
        neck=L(YOLOv8PAN)(variant=Inherit("variant"), scale=Inherit("scale")),
        head=L(YOLOv8Head)(
            num_classes=Inherit("num_classes"),
            variant=Inherit("variant"),
            loss=L(YOLOv8Loss)(num_classes=Inherit("num_classes"), box_weight=7.5, cls_weight=0.5, dfl_weight=1.5),
            score_thresh=0.001, nms_thresh=0.7, multi_label=True, detections_per_img=300,
        ),  # fmt: skip
        input_size=(input_size, input_size),
        class_names=None if class_names is None else list(class_names),
    )


def yolov8(scale: str, num_classes: int, **kwargs: object) -> LazyCall:
    """YOLOv8 (ultralytics' yolov8.yaml) at ``scale``; ``kwargs`` as :func:`yolov8_model`."""
    return yolov8_model("yolov8", scale, num_classes, **kwargs)  # type: ignore[arg-type]


def yolo11(scale: str, num_classes: int, **kwargs: object) -> LazyCall:
    """YOLO11 (ultralytics' yolo11.yaml) at ``scale``; ``kwargs`` as :func:`yolov8_model`."""
    return yolov8_model("yolo11", scale, num_classes, **kwargs)  # type: ignore[arg-type]


def yolov8_training(
    name: str,
    dataset: str = "coco",
    *,
    input_size: int = 640,
    max_epochs: int = 500,
    root: str | None = None,
    batch_size: int = 16,
    num_workers: int = 8,
) -> dict:
    """``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` of ultralytics' default recipe.

    ultralytics trained YOLOv8 and YOLO11 on COCO for 500 epochs at 640 with batch 64 (here
    ``batch_size`` per process, gradients accumulated to a nominal 64 images per step). Augmentation:
    a mosaic on every sample (closed for the last 10 epochs) around YOLO's letterbox, HSV gains
    and flip (:func:`~detkit.data.transforms.yolo_train_transforms`).

    Args:
        name: the config's name, for ``train.output_dir = runs/<name>``.
        dataset: ``"coco"`` or ``"voc"``.
        input_size: the training size.
        max_epochs: epochs.
        root: the dataset folder (default ``datasets/coco`` / ``datasets/VOCdevkit``).
        batch_size: training images per process.
        num_workers: data-loading processes per process.
    """
    data = dataset_sections(
        dataset, root, train_transforms=L(yolo_train_transforms)(size=input_size), batch_size=batch_size,
        num_workers=num_workers, test_batch_size=8,
    )  # fmt: skip
    with_mosaic(data["dataloader"]["train"], input_size, 1.0)
    recipe = ultralytics_sgd_recipe(batch_size)
    return dict(
        dataloader=data["dataloader"],
        optimizer=recipe["optimizer"],
        lr_schedule=recipe["lr_schedule"],
        train=default_train(
            max_epochs=max_epochs, output_dir=f"runs/{name}", checkpoint_period=5000,
            best_metric=data["best_metric"], **recipe["train"],
        ),
    )  # fmt: skip
