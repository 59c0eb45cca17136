"""SSDLite320, MobileNetV3-Large (reduced tail), on detkit's built-in shapes data (3 classes),
trained from scratch on a CPU (no pretrained weights exist here):

    python tools/train.py configs/ssd/ssdlite320_mobilenetv3_shapes.py
    python tools/benchmark_training.py configs/ssd/ssdlite320_mobilenetv3_shapes.py

torchvision's ssdlite augmentation (min-IoU crop, flip, resize to 320), batch 16, AdamW + cosine
over 1200 iterations (``shapes.ssd_shapes_training``); results in docs/benchmarks.md.
"""

from configs.common import shapes
from configs.common.ssd import ssdlite320_mobilenet_v3, ssdlite_train_transforms

model = ssdlite320_mobilenet_v3(num_classes=shapes.NUM_CLASSES, class_names=shapes.CLASS_NAMES)

_training = shapes.ssd_shapes_training("ssdlite320_mobilenetv3_shapes", ssdlite_train_transforms(320))
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (see ssdlite320_mobilenetv3_600e_coco.py).
test_overrides = ["model.image_size=(160, 160)", "model.head.pre_nms_topk=50", "model.head.detections_per_img=20"]
