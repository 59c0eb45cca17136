"""The toy detector of tests/apis_toys.py, with masks and landmarks: for tools/infer.py tests.

Needs ``tests`` on PYTHONPATH (for ``apis_toys``)::

    PYTHONPATH=tests python tools/infer.py tests/data/configs/apis/toy_detector.py none IMAGE --out DIR
"""

from apis_toys import ToyDetector

from detkit.config import L

model = L(ToyDetector)(num_classes=3, with_masks=True, with_landmarks=True, width=4, depth=0)
