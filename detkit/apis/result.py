"""The detections on one image: moved to :mod:`detkit.utils.result` (below drawing and the
predictor, which both use it). :class:`Result` and :func:`label_name` here are the same objects."""

from detkit.utils.result import Result, label_name

__all__ = ["Result", "label_name"]
