"""Mask R-CNN, ResNet-50-FPN, COCO (80 classes), torchvision's maskrcnn_resnet50_fpn settings,
trained with detectron2's 1x recipe (``rcnn_1x_training``: 90k iterations at batch 16, multi-scale
short side 640..800, evaluated at 800; bbox and segm AP).
COCO is read from datasets/coco (``dataloader.root``):

    python tools/train.py configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py
"""

from configs.common.rcnn import COCO_TRAIN_MIN_SIZES, TEST_OVERRIDES, mask_rcnn, rcnn_1x_training

model = mask_rcnn(num_classes=80, depth=50, min_size=COCO_TRAIN_MIN_SIZES)

_training = rcnn_1x_training("mask_rcnn_r50_fpn_1x_coco", "coco", with_masks=True)
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = list(TEST_OVERRIDES)
