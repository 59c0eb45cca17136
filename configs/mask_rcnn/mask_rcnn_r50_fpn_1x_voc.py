"""Mask R-CNN, ResNet-50-FPN, Pascal VOC (20 classes; masks from VOC's segmentation subset):
VOC2012 segmentation train (1464 images) -> val (1449), bbox and segm AP; 18 epochs at batch 16,
multi-scale short side 480..800, evaluated at 800 (``rcnn_1x_training``, the schedule is explained
there). VOC is read from datasets/VOCdevkit (``dataloader.root``):

    python tools/train.py configs/mask_rcnn/mask_rcnn_r50_fpn_1x_voc.py
"""

from configs.common.rcnn import TEST_OVERRIDES, VOC_TRAIN_MIN_SIZES, mask_rcnn, rcnn_1x_training
from detkit.data.voc import VOC_CLASSES

model = mask_rcnn(num_classes=20, depth=50, min_size=VOC_TRAIN_MIN_SIZES, max_size=1333, class_names=VOC_CLASSES)

_training = rcnn_1x_training("mask_rcnn_r50_fpn_1x_voc", "voc", with_masks=True)
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = list(TEST_OVERRIDES)
