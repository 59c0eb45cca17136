"""YOLOv3, Darknet-53, 416x416 letterboxed input (multi-scale 320..512 in training), Pascal VOC (20 classes)."""

from configs.common.yolo import TEST_OVERRIDES, yolov3_d53
from detkit.models.zoo import read_class_names

model = yolov3_d53(num_classes=20, input_size=416, class_names=read_class_names("voc"))

test_overrides = list(TEST_OVERRIDES)
