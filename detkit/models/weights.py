"""Loading local checkpoints into detkit modules: moved to :mod:`detkit.utils.checkpoint`.

This path keeps working: :func:`load_weights`, :class:`LoadReport` and :func:`apply_prefix_map`
are the same objects as in :mod:`detkit.utils.checkpoint`. ``WeightsMismatchError`` is now
:class:`~detkit.utils.checkpoint.CheckpointError` (a deprecated alias). Nothing is ever
downloaded here.
"""

from __future__ import annotations

import warnings
from typing import Any

from detkit.utils.checkpoint import CheckpointError, LoadReport, apply_prefix_map, load_weights

__all__ = ["LoadReport", "apply_prefix_map", "load_weights"]


def __getattr__(name: str) -> Any:
    if name == "WeightsMismatchError":
        warnings.warn("detkit.models.weights.WeightsMismatchError is deprecated: strict loading raises "
                      "detkit.utils.checkpoint.CheckpointError", DeprecationWarning, stacklevel=2)
        return CheckpointError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
