"""Faster R-CNN, ResNet-18-FPN, the synthetic shapes data: small enough to train on a CPU.

Smaller inputs, a narrower FPN and box head, and fewer proposals and sampled RoIs than the COCO
model; the structure is the same.
"""

from configs.common.rcnn import faster_rcnn

NUM_CLASSES = 3  # circle, square, triangle (detkit.data.shapes.SHAPE_CLASSES)

model = faster_rcnn(
    num_classes=NUM_CLASSES,
    depth=18,
    min_size=256,
    max_size=320,
    fpn_channels=64,
    representation_size=256,
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

# Training on the built-in shapes data (generated under runs/data/shapes on first use).
from configs.common.shapes import shapes_dataloader, shapes_evaluator  # noqa: E402
from detkit.config import L  # noqa: E402
from detkit.engine import MultiStepLR, build_optimizer, default_train  # noqa: E402

dataloader = shapes_dataloader(batch_size=4)
evaluator = shapes_evaluator()
optimizer = L(build_optimizer)(name="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)
# Sized to about 15 minutes on a 2-core CPU (docs/benchmarks.md).
lr_schedule = L(MultiStepLR)(milestones=[900, 1100], gamma=0.1, warmup_iters=100, warmup_factor=0.001)
train = default_train(
    max_iter=1200, output_dir="runs/faster_rcnn_r18_fpn_1x_shapes", checkpoint_period=300, eval_period=600,
    log_period=20, best_metric="bbox/AP50",
)
