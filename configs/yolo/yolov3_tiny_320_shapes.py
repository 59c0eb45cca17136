"""YOLOv3-tiny, 320x320 letterboxed input, the synthetic shapes data (3 classes): trains on a CPU.

Multi-scale training over 256..384. The 256x256 shapes images hold objects 30..128 px across
(160 px at 320), inside the range of YOLOv3-tiny's COCO anchors (10x14 .. 344x319), kept as they are.
Trained from scratch (no pretrained weights), see ``shapes.yolo_shapes_training`` and docs/benchmarks.md:

    python tools/train.py configs/yolo/yolov3_tiny_320_shapes.py
    python tools/benchmark_training.py configs/yolo/yolov3_tiny_320_shapes.py
"""

from configs.common import shapes
from configs.common.yolo import TEST_OVERRIDES, yolov3_tiny

model = yolov3_tiny(num_classes=shapes.NUM_CLASSES, input_size=320, class_names=shapes.CLASS_NAMES)
model.train_sizes = (256, 288, 320, 352, 384)

_training = shapes.yolo_shapes_training("yolov3_tiny_320_shapes", input_size=320)
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
