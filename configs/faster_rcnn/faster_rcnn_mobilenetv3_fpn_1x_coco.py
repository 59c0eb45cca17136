"""Faster R-CNN, MobileNetV3-Large-FPN, COCO (80 classes), torchvision's
fasterrcnn_mobilenet_v3_large_fpn settings, trained with detectron2's 1x recipe (``rcnn_1x_training``:
90k iterations at batch 16, multi-scale short side 640..800, evaluated at 800; torchvision's own
recipe for this model is 26 epochs, steps 16/22).
COCO is read from datasets/coco (``dataloader.root``):

    python tools/train.py configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_1x_coco.py
"""

from configs.common.rcnn import COCO_TRAIN_MIN_SIZES, TEST_OVERRIDES, faster_rcnn_mobilenet_v3_fpn, rcnn_1x_training

model = faster_rcnn_mobilenet_v3_fpn(num_classes=80, min_size=COCO_TRAIN_MIN_SIZES)

_training = rcnn_1x_training("faster_rcnn_mobilenetv3_fpn_1x_coco", "coco")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = list(TEST_OVERRIDES)
