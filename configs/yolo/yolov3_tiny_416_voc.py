"""YOLOv3-tiny, 416x416 letterboxed input (multi-scale 320..512 in training), Pascal VOC (20 classes)."""

from configs.common.yolo import TEST_OVERRIDES, yolov3_tiny
from detkit.models.zoo import read_class_names

model = yolov3_tiny(num_classes=20, input_size=416, class_names=read_class_names("voc"))

test_overrides = list(TEST_OVERRIDES)
