"""YOLO11n (ultralytics' yolo11.yaml, scale n), 640x640 letterbox, Pascal VOC (20 classes).

ultralytics' default recipe (``yolov8_training``, 100 epochs as ultralytics' VOC example) on
VOC07+12 trainval, evaluated on VOC2007 test. Data are read from datasets/VOCdevkit
(configs/common/datasets.py):

    python tools/train.py configs/yolov8/yolo11n_100e_voc.py
"""

from configs.common.yolov8 import TEST_OVERRIDES, yolo11, yolov8_training
from detkit.models.zoo import read_class_names

model = yolo11("n", num_classes=20, class_names=read_class_names("voc"))

_training = yolov8_training("yolo11n_100e_voc", "voc", max_epochs=100)
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
