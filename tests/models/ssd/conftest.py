"""SSD tests run single-threaded: on a loaded CPU every small op of a 2-thread OpenMP team waits
for a descheduled partner, which makes SSDLite's many small kernels 100 times slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
