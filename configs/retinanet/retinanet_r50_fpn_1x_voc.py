"""RetinaNet, ResNet-50-FPN, Pascal VOC (20 classes): detectron2's VOC schedule for the 1x recipe
(``one_stage_1x_training``): VOC07+12 trainval, 18k iterations at batch 16, lr 0.01, multi-scale
short side 480..800, evaluated at 800 on VOC2007 test (11-point mAP). VOC is read from
datasets/VOCdevkit:

    python tools/train.py configs/retinanet/retinanet_r50_fpn_1x_voc.py
"""

from configs.common.rcnn import VOC_TRAIN_MIN_SIZES
from configs.common.retinanet import TEST_OVERRIDES, one_stage_1x_training, retinanet
from detkit.data.voc import VOC_CLASSES

model = retinanet(num_classes=20, version=1, depth=50, min_size=VOC_TRAIN_MIN_SIZES, class_names=VOC_CLASSES)

_training = one_stage_1x_training("retinanet_r50_fpn_1x_voc", "voc")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
