"""Faster R-CNN, ResNet-18-FPN, trained on detkit's built-in shapes data: small enough for a CPU.

Smaller inputs, a narrower FPN and box head, and fewer proposals and sampled RoIs than the COCO
model; the structure is the same. The data are generated under runs/data/shapes on first use.

    python tools/train.py configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py
"""

from configs.common.rcnn import TEST_OVERRIDES, faster_rcnn
from configs.common import shapes

model = shapes.small_rcnn_for_shapes(
    faster_rcnn(
        num_classes=shapes.NUM_CLASSES,
        depth=18,
        min_size=256,
        max_size=320,
        fpn_channels=64,
        representation_size=256,
        frozen_stages=0,
        class_names=shapes.CLASS_NAMES,
    )
)
_training = shapes.rcnn_shapes_training("faster_rcnn_r18_fpn_1x_shapes")
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
