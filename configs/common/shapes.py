"""Training and evaluation on detkit's built-in synthetic shapes data (circle, square, triangle).

The dataset is generated on first use under ``root`` (deterministic from ``seed``), so a config
that uses these factories trains on a fresh machine with nothing downloaded:

    python tools/train.py configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py
"""

from __future__ import annotations

from detkit.config import L, LazyCall
from detkit.data import SHAPE_CLASSES, shapes_coco_dataset
from detkit.data.transforms import rcnn_test_transforms, rcnn_train_transforms
from detkit.engine import MultiStepLR, build_optimizer, build_test_loader, build_train_loader, default_train
from detkit.evaluation import CocoEvaluator

CLASS_NAMES = tuple(SHAPE_CLASSES)
NUM_CLASSES = len(CLASS_NAMES)


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
) -> dict:
    """``dataloader.train`` and ``dataloader.test`` on the shapes data (R-CNN transforms by default)."""

    def dataset(split: str, transforms: LazyCall) -> LazyCall:
        return L(shapes_coco_dataset)(
            root=root, split=split, num_train=num_train, num_val=num_val, image_size=image_size, seed=seed,
            transforms=transforms, with_masks=with_masks,
        )

    return dict(
        train=L(build_train_loader)(
            dataset=dataset("train", train_transforms or L(rcnn_train_transforms)()), batch_size=batch_size
        ),
        test=L(build_test_loader)(dataset=dataset("val", test_transforms or L(rcnn_test_transforms)())),
    )


def shapes_evaluator(with_masks: bool = False) -> LazyCall:
    """COCO-style box (and mask) AP on the shapes validation split, ground truth from its targets."""
    return L(CocoEvaluator)(
        class_names=list(CLASS_NAMES), iou_types=["bbox", "segm"] if with_masks else ["bbox"]
    )


# Shrinks an R-CNN shapes config for tests/test_configs.py (same structure, small inputs, few proposals).
RCNN_TEST_OVERRIDES = [
    "model.preprocess.min_size=96",
    "model.preprocess.max_size=128",
    "model.rpn.pre_nms_top_n_train=200",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=50",
]


def small_rcnn_for_shapes(model: LazyCall) -> LazyCall:
    """Adapt an R18-FPN R-CNN tree to the 256 px shapes images (in place; returned for chaining):
    batch norm trained (there are no pretrained statistics to freeze), fewer proposals and RoIs."""
    model.backbone.norm = "bn"
    model.rpn.pre_nms_top_n_train = 600
    model.rpn.post_nms_top_n_train = 300
    model.rpn.pre_nms_top_n_test = 300
    model.rpn.post_nms_top_n_test = 150
    model.roi_heads.batch_size_per_image = 128
    return model


def rcnn_shapes_training(name: str, with_masks: bool = False) -> dict:
    """``dataloader``, ``evaluator``, ``optimizer``, ``lr_schedule`` and ``train`` for an R-CNN on the
    shapes data, sized to about 15 minutes on a 2-core CPU (docs/benchmarks.md); outputs in runs/<name>."""
    return dict(
        dataloader=shapes_dataloader(batch_size=4, with_masks=with_masks),
        evaluator=shapes_evaluator(with_masks=with_masks),
        optimizer=L(build_optimizer)(name="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
        lr_schedule=L(MultiStepLR)(milestones=[900, 1100], gamma=0.1, warmup_iters=100, warmup_factor=0.001),
        train=default_train(
            max_iter=1200, output_dir=f"runs/{name}", checkpoint_period=300, eval_period=600, log_period=20,
            best_metric="bbox/AP50",
        ),
    )
