"""YOLOv3, Darknet-53, 416x416 letterboxed input (multi-scale 320..512 in training), Pascal VOC (20 classes).

Trained with mmdetection's 273-epoch YOLOv3 recipe (``yolov3_273e_training``: batch 64, steps at
epochs 218/246, YOLO augmentation) on VOC07+12 trainval, evaluated on VOC2007 test (11-point mAP).
Data are read from datasets/VOCdevkit (configs/common/datasets.py):

    python tools/train.py configs/yolo/yolov3_d53_416_voc.py
"""

from configs.common.yolo import TEST_OVERRIDES, yolov3_d53, yolov3_273e_training
from detkit.models.zoo import read_class_names

model = yolov3_d53(num_classes=20, input_size=416, class_names=read_class_names("voc"))

_training = yolov3_273e_training("yolov3_d53_416_voc", "voc", input_size=416)
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
