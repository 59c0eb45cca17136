"""A child config: call the bases, then set attributes."""

from configs.common.toy_models import toy_detector
from configs.common.toy_schedules import toy_optimizer, toy_train

model = toy_detector(num_classes=5)
model.backbone.depth = 3
model.pixel_mean = (103.5, 116.3, 123.7)

train = toy_train(output_dir="runs/toy_small")
train.max_iter = 10

optimizer = toy_optimizer(lr=0.02)

_private = 1
