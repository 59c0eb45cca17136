"""RetinaNet, ResNet-50-FPN, COCO (80 classes): torchvision's retinanet_resnet50_fpn settings, trained
with detectron2's 1x recipe (``one_stage_1x_training``: 90k iterations at batch 16, lr 0.01,
multi-scale short side 640..800, evaluated at 800). COCO is read from datasets/coco:

    python tools/train.py configs/retinanet/retinanet_r50_fpn_1x_coco.py
"""

from configs.common.rcnn import COCO_TRAIN_MIN_SIZES
from configs.common.retinanet import TEST_OVERRIDES, one_stage_1x_training, retinanet

model = retinanet(num_classes=80, version=1, depth=50, min_size=COCO_TRAIN_MIN_SIZES)

_training = one_stage_1x_training("retinanet_r50_fpn_1x_coco", "coco")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few candidates).
test_overrides = list(TEST_OVERRIDES)
