"""RetinaNet, ResNet-18-FPN, trained from scratch on detkit's built-in shapes data: small enough for a CPU.

Smaller inputs (short side 256), a 64-channel FPN and subnets, anchors from 16 px (the shapes are
20-130 px), batch norm trained, and the shapes recipe (batch 4, AdamW lr 1e-3 with a cosine decay,
configs/common/shapes.py). The subnets are torchvision's v2 ones (GroupNorm, GIoU box loss), which
train from scratch better than v1's plain convs: in 150-iteration sanity runs on a loaded machine
v1 reached bbox AP50 0.003 where FCOS (GroupNorm subnets, GIoU) reached 0.14. The data are
generated under runs/data/shapes on first use.

    python tools/train.py configs/retinanet/retinanet_r18_fpn_shapes.py
"""

from configs.common import shapes
from configs.common.retinanet import TEST_OVERRIDES, retinanet

model = retinanet(
    num_classes=shapes.NUM_CLASSES, version=2, depth=18, min_size=256, max_size=320, fpn_channels=64, norm="bn",
    frozen_stages=0, anchor_base_sizes=(16, 32, 64, 128, 256), class_names=shapes.CLASS_NAMES,
)
model.head.detections_per_img = 100

_training = shapes.rcnn_shapes_training("retinanet_r18_fpn_shapes")
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
