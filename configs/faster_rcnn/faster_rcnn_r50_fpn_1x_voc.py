"""Faster R-CNN, ResNet-50-FPN, Pascal VOC (20 classes)."""

from configs.common.rcnn import faster_rcnn

model = faster_rcnn(num_classes=20, depth=50, min_size=600, max_size=1000)

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = [
    "model.preprocess.min_size=96",
    "model.preprocess.max_size=128",
    "model.rpn.pre_nms_top_n_train=200",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=50",
]
