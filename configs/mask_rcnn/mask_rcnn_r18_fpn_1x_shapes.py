"""Mask R-CNN, ResNet-18-FPN, the synthetic shapes data: small enough to train on a CPU."""

from configs.common.rcnn import mask_rcnn

NUM_CLASSES = 3  # circle, square, triangle (detkit.data.shapes.SHAPE_CLASSES)

model = mask_rcnn(
    num_classes=NUM_CLASSES,
    depth=18,
    min_size=256,
    max_size=320,
    fpn_channels=64,
    representation_size=256,
    mask_channels=64,
    frozen_stages=0,
    class_names=("circle", "square", "triangle"),
)
model.backbone.norm = "bn"  # no pretrained statistics to freeze: train them
model.rpn.pre_nms_top_n_train = 600
model.rpn.post_nms_top_n_train = 300
model.rpn.pre_nms_top_n_test = 300
model.rpn.post_nms_top_n_test = 150
model.roi_heads.batch_size_per_image = 128

# Shrinks the config for tests/test_configs.py (same structure, small inputs, few proposals).
test_overrides = [
    "model.preprocess.min_size=96",
    "model.preprocess.max_size=128",
    "model.rpn.pre_nms_top_n_train=200",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=50",
]
