"""The checkpoint a converter returns: detkit's state dict and where it came from."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from torch import Tensor

import detkit

__all__ = ["converted_checkpoint"]


def converted_checkpoint(model: Mapping[str, Tensor], **meta: object) -> dict[str, object]:
    """``{"model": model, "meta": meta}`` with ``detkit_version`` and ``date`` (UTC, ISO) added.

    Args:
        model: the converted detkit state dict.
        meta: what the converter records (``source``, ``arch``, ``num_classes``, ...).
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"model": model, "meta": {**meta, "detkit_version": detkit.__version__, "date": stamp}}
