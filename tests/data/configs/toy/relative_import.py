"""A child that reaches its base with a relative import."""

from ..common.toy_models import toy_detector

model = toy_detector(num_classes=2, width=4)
