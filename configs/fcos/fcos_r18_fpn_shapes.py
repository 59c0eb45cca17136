"""FCOS, ResNet-18-FPN, trained from scratch on detkit's built-in shapes data: small enough for a CPU.

Smaller inputs (short side 256), a 64-channel FPN and subnets (GroupNorm, 32 groups), batch norm
trained, a lower score threshold for evaluation, and the shapes recipe (batch 4, AdamW lr 1e-3
with a cosine decay, configs/common/shapes.py). The data are generated under runs/data/shapes on
first use.

    python tools/train.py configs/fcos/fcos_r18_fpn_shapes.py
"""

from configs.common import shapes
from configs.common.fcos import fcos
from configs.common.retinanet import TEST_OVERRIDES

model = fcos(
    num_classes=shapes.NUM_CLASSES, depth=18, min_size=256, max_size=320, fpn_channels=64, norm="bn",
    frozen_stages=0, class_names=shapes.CLASS_NAMES,
)
model.head.score_thresh = 0.05

_training = shapes.rcnn_shapes_training("fcos_r18_fpn_shapes")
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
