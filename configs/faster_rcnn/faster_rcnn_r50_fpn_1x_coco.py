"""Faster R-CNN, ResNet-50-FPN, COCO (80 classes), torchvision's fasterrcnn_resnet50_fpn settings,
trained with detectron2's 1x recipe (``rcnn_1x_training``: 90k iterations at batch 16, multi-scale
short side 640..800, evaluated at 800).
COCO is read from datasets/coco (``dataloader.root``, configs/common/datasets.py):

    python tools/train.py configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py
"""

from configs.common.rcnn import COCO_TRAIN_MIN_SIZES, TEST_OVERRIDES, faster_rcnn, rcnn_1x_training

model = faster_rcnn(num_classes=80, depth=50, min_size=COCO_TRAIN_MIN_SIZES)

_training = rcnn_1x_training("faster_rcnn_r50_fpn_1x_coco", "coco")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = list(TEST_OVERRIDES)
