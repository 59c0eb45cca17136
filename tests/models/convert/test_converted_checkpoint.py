"""converted_checkpoint: the converters' common checkpoint layout."""

from __future__ import annotations

import datetime

import torch

import detkit
from detkit.models.convert.checkpoint import converted_checkpoint


def test_converted_checkpoint_stamps_version_and_utc_date():
    state = {"w": torch.ones(2)}
    checkpoint = converted_checkpoint(state, source="somewhere", num_classes=3)
    assert checkpoint["model"] is state
    meta = checkpoint["meta"]
    assert meta["source"] == "somewhere" and meta["num_classes"] == 3
    assert meta["detkit_version"] == detkit.__version__
    stamped = datetime.datetime.fromisoformat(meta["date"])
    assert stamped.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.timezone.utc) - stamped) < datetime.timedelta(minutes=1)
