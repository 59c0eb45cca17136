"""YOLOv3, Darknet-53, 416x416 letterboxed input (multi-scale 320..512 in training), COCO (80 classes)."""

from configs.common.yolo import TEST_OVERRIDES, yolov3_d53
from detkit.models.zoo import read_class_names

model = yolov3_d53(num_classes=80, input_size=416, class_names=read_class_names("coco"))

test_overrides = list(TEST_OVERRIDES)
