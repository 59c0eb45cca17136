"""Fixtures for the data-layer tests: a tiny shapes dataset written once per session."""

from __future__ import annotations

import pytest

from detkit.data.shapes import ShapesDatasetPaths, generate_shapes_dataset


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> ShapesDatasetPaths:
    """8 train + 4 val images of 96x128 (H x W), seed 0."""
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), 8, 4, (96, 128), seed=0)
