"""The op implementations every op test runs: the pure-PyTorch fallback and the compiled kernels,
on the CPU and (``cuda`` marker) on a GPU. With DETKIT_REQUIRE_EXT=1 (set by CI) a missing compiled
extension is a failure instead of a skip, so a broken build cannot pass unnoticed."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from detkit.ops import _ext


@dataclass(frozen=True)
class Implementation:
    name: str
    device: str
    compiled: bool


IMPLEMENTATIONS = [
    pytest.param(Implementation("fallback-cpu", "cpu", False), id="fallback-cpu"),
    pytest.param(Implementation("compiled-cpu", "cpu", True), id="compiled-cpu"),
    pytest.param(Implementation("compiled-cuda", "cuda", True), id="compiled-cuda", marks=pytest.mark.cuda),
    pytest.param(Implementation("fallback-cuda", "cuda", False), id="fallback-cuda", marks=pytest.mark.cuda),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Implementation:
    """Selects one implementation for the test (via DETKIT_DISABLE_EXT and the tensors' device)."""
    implementation: Implementation = request.param
    if implementation.compiled:
        if not _ext.ext_loaded():
            if os.environ.get("DETKIT_REQUIRE_EXT") == "1":
                pytest.fail(f"detkit._C is not built but DETKIT_REQUIRE_EXT=1: {_ext.ext_load_error()}")
            pytest.skip(f"detkit._C is not built: {_ext.ext_load_error()}")
        monkeypatch.setenv("DETKIT_DISABLE_EXT", "0")
        assert _ext.has_ext(implementation.device), f"no compiled kernels for {implementation.device}"
    else:
        monkeypatch.setenv("DETKIT_DISABLE_EXT", "1")
        assert not _ext.has_ext(implementation.device)
    return implementation
