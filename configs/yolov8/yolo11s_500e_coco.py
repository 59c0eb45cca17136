"""YOLO11s (ultralytics' yolo11.yaml, scale s), 640x640 letterbox, COCO (80 classes).

ultralytics' default recipe (``yolov8_training``: SGD lr 0.01 with a 3-epoch warm-up and a linear
decay, nominal batch 64, EMA, mosaic closed for the last 10 epochs), 500 epochs. Data are read from
datasets/coco (configs/common/datasets.py). ultralytics' weights convert with
``detkit convert --from ultralytics --arch yolo11s IN.pth OUT.pth``:

    python tools/train.py configs/yolov8/yolo11s_500e_coco.py
"""

from configs.common.yolov8 import TEST_OVERRIDES, yolo11, yolov8_training
from detkit.models.zoo import read_class_names

model = yolo11("s", num_classes=80, class_names=read_class_names("coco"))

_training = yolov8_training("yolo11s_500e_coco", "coco")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
