"""Training and evaluation on detkit's built-in synthetic shapes data (circle, square, triangle).

The dataset is generated on first use under ``root`` (deterministic from ``seed``), so a config
that uses these factories trains on a fresh machine with nothing downloaded:

    python tools/train.py configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py
"""

from __future__ import annotations

from detkit.config import L, LazyCall
from detkit.data import SHAPE_CLASSES, shapes_coco_dataset
from detkit.data.transforms import rcnn_test_transforms, rcnn_train_transforms
from detkit.engine import build_test_loader, build_train_loader
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
