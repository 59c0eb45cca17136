"""Shared pytest setup: the ``cuda`` marker skips without a GPU; paths to the test data; the
process-wide patches of reference libraries undone before every test."""

from __future__ import annotations

from pathlib import Path

import cv2
import PIL.Image
import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "fixtures"

# ultralytics (a reference of the YOLOv8 parity tests, imported at their collection) replaces
# PIL.Image.open (retrying unreadable files through a plugin it tries to pip-install), torch.save
# and, on some systems, cv2's image io, for the whole process. detkit's own tests must run against
# the real functions, whatever test module was collected first.
_ORIGINALS = {
    (PIL.Image, "open"): PIL.Image.open,
    (torch, "save"): torch.save,
    (cv2, "imread"): cv2.imread,
    (cv2, "imwrite"): cv2.imwrite,
    (cv2, "imshow"): cv2.imshow,
}


@pytest.fixture(autouse=True)
def _real_library_functions() -> None:
    for (owner, name), original in _ORIGINALS.items():
        setattr(owner, name, original)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
