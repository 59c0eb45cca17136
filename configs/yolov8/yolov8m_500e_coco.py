"""YOLOv8m (ultralytics' yolov8.yaml, scale m), 640x640 letterbox, COCO (80 classes).

ultralytics' default recipe (``yolov8_training``: SGD lr 0.01 with a 3-epoch warm-up and a linear
decay, nominal batch 64, EMA, mosaic closed for the last 10 epochs), 500 epochs. Data are read from
datasets/coco (configs/common/datasets.py). ultralytics' weights convert with
``detkit convert --from ultralytics --arch yolov8m IN.pth OUT.pth``:

    python tools/train.py configs/yolov8/yolov8m_500e_coco.py
"""

from configs.common.yolov8 import TEST_OVERRIDES, yolov8, yolov8_training
from detkit.models.zoo import read_class_names

model = yolov8("m", num_classes=80, class_names=read_class_names("coco"))

_training = yolov8_training("yolov8m_500e_coco", "coco")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
