"""YOLOv3-tiny, 416x416 letterboxed input (multi-scale 320..512 in training), COCO (80 classes).

The official weights: ``python tools/fetch_weights.py yolov3-tiny`` (darknet format; load them with
``detkit.models.convert.darknet.load_darknet_weights`` or use ``detkit.models.zoo.yolov3_tiny_coco``).
"""

from configs.common.yolo import TEST_OVERRIDES, yolov3_tiny
from detkit.models.zoo import read_class_names

model = yolov3_tiny(num_classes=80, input_size=416, class_names=read_class_names("coco"))

test_overrides = list(TEST_OVERRIDES)
