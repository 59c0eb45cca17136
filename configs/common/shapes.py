"""Training and evaluation on detkit's built-in synthetic shapes data (circle, square, triangle).

The dataset is generated on first use under ``root`` (deterministic from ``seed``), so a config
that uses these factories trains on a fresh machine with nothing downloaded:

    python tools/train.py configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py
"""

from __future__ import annotations

from configs.common.datasets import detection_dataloader
from configs.common.yolo import with_mosaic
from detkit.config import Inherit, L, LazyCall
from detkit.data import (
    SHAPE_CLASSES,
    SHAPE_KEYPOINT_FLIP_PAIRS,
    SHAPE_KEYPOINT_SIGMA,
    SHAPE_KEYPOINTS,
    SHAPE_SKELETONS,
    shapes_coco_dataset,
)
from detkit.data.transforms import rcnn_test_transforms, rcnn_train_transforms, yolo_train_transforms
from detkit.engine import CosineLR, build_optimizer, default_train
from detkit.evaluation import CocoEvaluator

CLASS_NAMES = tuple(SHAPE_CLASSES)
NUM_CLASSES = len(CLASS_NAMES)
# The keypoint variant (the corners of triangles and squares, detkit/data/shapes.py).
KEYPOINT_NAMES = tuple(SHAPE_KEYPOINTS)
KEYPOINT_FLIP_PAIRS = tuple(SHAPE_KEYPOINT_FLIP_PAIRS)
KEYPOINT_SKELETON = tuple(edge for name in CLASS_NAMES for edge in SHAPE_SKELETONS[name])


def shapes_dataloader(
    root: str = "runs/data/shapes",
    batch_size: int = 4,
    image_size: int = 256,
    num_train: int = 400,
    num_val: int = 100,
    seed: int = 0,
    with_masks: bool = False,
    train_transforms: LazyCall | None = None,
    test_transforms: LazyCall | None = None,
    with_keypoints: bool = False,
) -> dict:
    """``dataloader.train`` and ``dataloader.test`` on the shapes data (R-CNN transforms by default).

    Both splits are generated together, so the generator's settings are said once, on the section:
    ``dataloader.root``, ``dataloader.image_size``, ``dataloader.num_train``, ``dataloader.num_val``
    and ``dataloader.seed`` (the datasets take them with ``Inherit``)."""
    shared = ("root", "num_train", "num_val", "image_size", "seed")

    def dataset(split: str, transforms: LazyCall) -> LazyCall:
        inherited = {key: Inherit(key) for key in shared}
        extra = {"with_keypoints": True} if with_keypoints else {}
        return L(shapes_coco_dataset)(split=split, **inherited, transforms=transforms, with_masks=with_masks, **extra)

    return detection_dataloader(
        dataset("train", train_transforms or L(rcnn_train_transforms)()),
        dataset("val", test_transforms or L(rcnn_test_transforms)()),
        batch_size=batch_size, num_workers=0, root=root, num_train=num_train, num_val=num_val,
        image_size=image_size, seed=seed,
    )


def shapes_evaluator(with_masks: bool = False) -> LazyCall:
    """COCO-style box (and mask) AP on the shapes validation split, ground truth from its targets."""
    return L(CocoEvaluator)(
        class_names=list(CLASS_NAMES), iou_types=["bbox", "segm"] if with_masks else ["bbox"]
    )


def keypoint_rcnn_shapes_training(name: str, max_iter: int = 1200) -> dict:
    """:func:`rcnn_shapes_training` on the keypoint variant of the shapes data (its own root,
    runs/data/shapes_keypoints): the flip swaps the right and left corners, evaluation adds COCO
    keypoint AP (OKS with the data's sigmas) and the best checkpoint is chosen by it."""
    training = rcnn_shapes_training(name, max_iter=max_iter)
    training["dataloader"] = shapes_dataloader(
        root="runs/data/shapes_keypoints", batch_size=4, with_keypoints=True,
        train_transforms=L(rcnn_train_transforms)(keypoint_flip_pairs=[list(p) for p in KEYPOINT_FLIP_PAIRS]),
    )
    training["evaluator"] = L(CocoEvaluator)(
        class_names=list(CLASS_NAMES), iou_types=["bbox", "keypoints"],
        keypoint_sigmas=[SHAPE_KEYPOINT_SIGMA] * len(KEYPOINT_NAMES),
    )
    training["train"].best_metric = "keypoints/AP"
    return training


def small_rcnn_for_shapes(model: LazyCall) -> LazyCall:
    """Adapt an R18-FPN R-CNN tree to the 256 px shapes images (in place; returned for chaining):
    batch norm trained (there are no pretrained statistics to freeze), fewer proposals and RoIs."""
    model.backbone.norm = "bn"
    model.rpn.pre_nms_topk_train = 600
    model.rpn.post_nms_topk_train = 300
    model.rpn.pre_nms_topk_test = 300
    model.rpn.post_nms_topk_test = 150
    model.roi_heads.batch_size_per_image = 128
    return model


def adamw_cosine(max_iter: int, lr: float = 1e-3, weight_decay: float = 0.05,
                 warmup_iters: int = 100) -> dict[str, LazyCall]:
    """``optimizer`` and ``lr_schedule`` for training from scratch in a short budget: AdamW (its step
    does not depend on the loss's scale) with a linear warm-up over ``warmup_iters / max_iter`` of
    the run and a cosine decay to 1 % over the whole run; both follow a ``train.max_iter``
    override (an explicit ``lr_schedule.max_t`` or ``lr_schedule.warmup_iters`` wins). On the
    shapes data this reaches in 1200 iterations what SGD (lr 0.02, steps) did
    not (Faster R-CNN R18-FPN: AP50 0.95 against 0.75, docs/benchmarks.md)."""
    return dict(
        optimizer=L(build_optimizer)(name="AdamW", lr=lr, weight_decay=weight_decay),
        lr_schedule=L(CosineLR)(
            max_t=None, min_factor=0.01, warmup_iters=None, warmup_fraction=warmup_iters / max_iter, warmup_factor=0.001
        ),
    )


def shapes_train_settings(name: str, max_iter: int) -> dict:
    """``train``: outputs in runs/<name>, checkpoints every 300 iterations, evaluation half-way and
    at the end (``eval_fraction``, which follows a ``train.max_iter`` override), the best checkpoint
    by bbox AP50."""
    return default_train(
        max_iter=max_iter, output_dir=f"runs/{name}", checkpoint_period=300, eval_fraction=0.5,
        log_period=20, best_metric="bbox/AP50",
    )


def rcnn_shapes_training(name: str, with_masks: bool = False, max_iter: int = 1200) -> dict:
    """``dataloader``, ``evaluator``, ``optimizer``, ``lr_schedule`` and ``train`` for an R-CNN on the
    shapes data: batch 4, AdamW lr 1e-3 with a cosine decay (:func:`adamw_cosine`), 1200 iterations
    (about 8 minutes on a quiet 2-core CPU for R18-FPN, docs/benchmarks.md); outputs in runs/<name>."""
    return dict(
        dataloader=shapes_dataloader(batch_size=4, with_masks=with_masks),
        evaluator=shapes_evaluator(with_masks=with_masks),
        **adamw_cosine(max_iter),
        train=shapes_train_settings(name, max_iter),
    )


def yolo_shapes_training(
    name: str,
    input_size: int = 320,
    batch_size: int = 8,
    max_iter: int = 1200,
    lr: float = 1e-3,
    mosaic_prob: float = 0.5,
) -> dict:
    """``dataloader``, ``evaluator``, ``optimizer``, ``lr_schedule`` and ``train`` for a YOLO trained
    from scratch on the shapes data (docs/benchmarks.md); outputs in runs/<name>.

    Training data: YOLO's pipeline (letterbox to ``input_size``, HSV gains, flip) behind a
    :class:`~detkit.data.mosaic.MosaicDataset` drawn with probability ``mosaic_prob`` (the other
    samples are single images at the evaluation scale); the model picks the multi-scale size per
    batch itself (``model.train_sizes``). Evaluation: the plain val images (the model letterboxes
    and maps its boxes back). AdamW (insensitive to the summed loss's scale, which matters from
    scratch) with a linear warm-up and a cosine decay (:func:`adamw_cosine`).
    """
    dataloader = shapes_dataloader(batch_size=batch_size, train_transforms=L(yolo_train_transforms)(size=input_size))
    if mosaic_prob > 0:
        with_mosaic(dataloader["train"], output_size=input_size, prob=mosaic_prob)
    return dict(
        dataloader=dataloader,
        evaluator=shapes_evaluator(),
        **adamw_cosine(max_iter, lr=lr, weight_decay=0.01),
        train=shapes_train_settings(name, max_iter),
    )


def ssd_shapes_training(name: str, train_transforms: LazyCall, batch_size: int = 16, max_iter: int = 1200) -> dict:
    """``dataloader``, ``evaluator``, ``optimizer``, ``lr_schedule`` and ``train`` for an SSD trained
    from scratch on the shapes data: the given SSD training pipeline (it resizes to the model's
    input), plain images for evaluation (the model resizes and maps its boxes back), AdamW + cosine
    (:func:`adamw_cosine`); outputs in runs/<name>."""
    return dict(
        dataloader=shapes_dataloader(batch_size=batch_size, train_transforms=train_transforms),
        evaluator=shapes_evaluator(),
        **adamw_cosine(max_iter),
        train=shapes_train_settings(name, max_iter),
    )
