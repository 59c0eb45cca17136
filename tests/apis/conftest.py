"""Fixtures for the inference tests: the toy detector of tests/apis_toys.py and a predictor on it."""

from __future__ import annotations

import pytest
from apis_toys import ToyDetector

from detkit.apis import Predictor


@pytest.fixture
def toy() -> ToyDetector:
    """The toy detector with masks and landmarks."""
    return ToyDetector(with_masks=True, with_landmarks=True)


@pytest.fixture
def predictor(toy: ToyDetector) -> Predictor:
    """A CPU predictor on :func:`toy`, no filtering."""
    return Predictor(toy, device="cpu")
