"""High-level inference: build a detector from a config and checkpoint, run it on images and video.

* :class:`Predictor` (``detkit.apis.predictor``): any detector, any image input, :class:`Result`\\ s;
  ``predict_each`` for long runs where one bad input must not stop the rest;
  :data:`DISPLAY_SCORE_THRESH`, :class:`UntrainedModelWarning`.
* :class:`Result` (``detkit.utils.result``, also ``detkit.apis.result``): detections of one image
  as numpy arrays, ``to_coco()``.
* Sliced inference (``detkit.apis.slicing``, ``detkit.apis.slicing_merge``): :class:`SliceSettings`,
  :func:`slice_windows`, :func:`sliced_predict` (also ``Predictor(..., slice_size=...)``).
* ``detkit.apis.video``: threaded video reading, writing, and the read -> model -> draw -> write
  pipeline of ``tools/infer.py``.
* Drawing lives in :mod:`detkit.utils.visualization`, image reading in :mod:`detkit.utils.image_io`
  and checkpoint reading in :mod:`detkit.utils.checkpoint` (``CheckpointError``).
"""

from typing import Any

from detkit.apis.images import ImageReadError, read_image, to_bgr_uint8, to_model_image
from detkit.apis.predictor import (
    DISPLAY_SCORE_THRESH, CheckpointError, Predictor, UntrainedModelWarning, default_device,
)
from detkit.apis.slicing import SliceSettings, slice_windows, sliced_predict
from detkit.utils.result import Result

__all__ = ["DISPLAY_SCORE_THRESH", "CheckpointError", "ImageReadError", "Predictor", "Result",
           "SliceSettings", "UntrainedModelWarning", "default_device", "read_image", "slice_windows",
           "sliced_predict", "to_bgr_uint8", "to_model_image"]


def __getattr__(name: str) -> Any:
    if name == "load_model_weights":  # deprecated; the warning comes from detkit.apis.predictor
        from detkit.apis import predictor

        return predictor.load_model_weights
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
