"""Faster R-CNN, ResNet-50-FPN, Pascal VOC (20 classes): detectron2's PascalVOC-Detection recipe
(``rcnn_1x_training``): VOC07+12 trainval, 18k iterations at batch 16, multi-scale short side
480..800, evaluated at 800 on VOC2007 test (11-point mAP).
VOC is read from datasets/VOCdevkit (``dataloader.root``):

    python tools/train.py configs/faster_rcnn/faster_rcnn_r50_fpn_1x_voc.py
"""

from configs.common.rcnn import TEST_OVERRIDES, VOC_TRAIN_MIN_SIZES, faster_rcnn, rcnn_1x_training
from detkit.data.voc import VOC_CLASSES

model = faster_rcnn(num_classes=20, depth=50, min_size=VOC_TRAIN_MIN_SIZES, max_size=1333, class_names=VOC_CLASSES)

_training = rcnn_1x_training("faster_rcnn_r50_fpn_1x_voc", "voc")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = list(TEST_OVERRIDES)
