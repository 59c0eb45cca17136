"""High-level inference: build a detector from a config and checkpoint, run it on images and video.

* :class:`Predictor` (``detkit.apis.predictor``): any detector, any image input, :class:`Result`\\ s.
* :class:`Result` (``detkit.apis.result``): detections of one image as numpy arrays, ``to_coco()``.
* ``detkit.apis.video``: threaded video reading, writing, and the read -> model -> draw -> write
  pipeline of ``tools/infer.py``.
* Drawing lives in :mod:`detkit.utils.visualization`.
"""

from detkit.apis.images import ImageReadError, read_image, to_bgr_uint8, to_model_image
from detkit.apis.predictor import CheckpointError, Predictor, default_device, load_model_weights
from detkit.apis.result import Result

__all__ = ["CheckpointError", "ImageReadError", "Predictor", "Result", "default_device",
           "load_model_weights", "read_image", "to_bgr_uint8", "to_model_image"]
