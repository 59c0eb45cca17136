"""Faster R-CNN, ResNet-50-FPN, COCO (80 classes), torchvision's fasterrcnn_resnet50_fpn settings."""

from configs.common.rcnn import faster_rcnn

model = faster_rcnn(num_classes=80, depth=50)

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = [
    "model.preprocess.min_size=96",
    "model.preprocess.max_size=128",
    "model.rpn.pre_nms_top_n_train=200",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=50",
]
