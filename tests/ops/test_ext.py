"""Choosing between compiled kernels and fallbacks."""

from __future__ import annotations

import logging

import pytest
import torch

from detkit.ops import _ext, nms


def test_disable_ext_forces_the_fallback(monkeypatch):
    monkeypatch.setenv("DETKIT_DISABLE_EXT", "1")
    assert not _ext.has_ext("cpu")
    assert not _ext.has_ext(torch.device("cuda:0"))


@pytest.mark.skipif(not _ext.ext_loaded(), reason="detkit._C is not built")
def test_compiled_cpu_kernels_are_reported(monkeypatch):
    monkeypatch.delenv("DETKIT_DISABLE_EXT", raising=False)
    assert _ext.has_ext("cpu")
    assert _ext.has_ext("cuda") == (_ext.cuda_version() > 0)
    assert not _ext.has_ext("meta")


def test_first_fallback_warns_once(monkeypatch, caplog):
    monkeypatch.setenv("DETKIT_DISABLE_EXT", "1")
    monkeypatch.setattr(_ext, "_WARNED_FALLBACK", False)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with caplog.at_level(logging.WARNING, logger="detkit.ops._ext"):
        nms(boxes, torch.ones(1), 0.5)
        nms(boxes, torch.ones(1), 0.5)
    warnings = [r for r in caplog.records if "fallback" in r.getMessage()]
    assert len(warnings) == 1 and "DETKIT_DISABLE_EXT" in warnings[0].getMessage()
