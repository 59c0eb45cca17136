"""YOLOv8n, 320x320 letterbox, the synthetic shapes data (3 classes): trains on a CPU.

Trained from scratch (no pretrained weights) with the YOLO shapes recipe of the other families
(``shapes.yolo_shapes_training``: YOLO augmentation behind a mosaic on half the samples, AdamW with
warm-up and cosine decay, 1200 iterations of batch 8), so that the families compare on the same
budget (docs/benchmarks.md):

    python tools/train.py configs/yolov8/yolov8n_320_shapes.py
    python tools/benchmark_training.py configs/yolov8/yolov8n_320_shapes.py
"""

from configs.common import shapes
from configs.common.yolov8 import TEST_OVERRIDES, yolov8

model = yolov8("n", num_classes=shapes.NUM_CLASSES, input_size=320, class_names=shapes.CLASS_NAMES)

_training = shapes.yolo_shapes_training("yolov8n_320_shapes", input_size=320)
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
