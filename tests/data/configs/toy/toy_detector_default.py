"""Another child of the same base, left at its defaults."""

from configs.common.toy_models import toy_detector

model = toy_detector()
