"""Helpers shared by the backbone tests: torchvision checkpoints with non-trivial norm statistics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn


def perturb_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm (or torchvision FrozenBatchNorm2d) random statistics and affine values.

    Freshly initialised norms are the identity map in eval mode, which would hide a wrong eps or a
    missing norm; random values make the comparison meaningful.
    """
    generator = torch.Generator().manual_seed(seed)
    norm_types = (nn.modules.batchnorm._BatchNorm, torchvision.ops.FrozenBatchNorm2d)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, norm_types):
                size = module.running_mean.shape
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    return model


@pytest.fixture
def torchvision_checkpoint(tmp_path: Path) -> Callable[[nn.Module], Path]:
    """Returns ``save(model) -> path``: perturbs the model's norms and saves its state dict."""

    def save(model: nn.Module, name: str = "checkpoint.pth") -> Path:
        perturb_norms(model)
        path = tmp_path / name
        torch.save(model.state_dict(), path)
        return path

    return save


def _run_and_capture(model: nn.Module, images: Tensor, taps: dict[str, nn.Module]) -> dict[str, Tensor]:
    """Runs ``model(images)`` and returns the output of each tapped sub-module, keyed as ``taps``."""
    store: dict[str, Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, output, key=key: store.__setitem__(key, output.clone()))
        for key, module in taps.items()
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return {key: store[key] for key in taps}


def _assert_features_close(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Same levels in the same order; max abs difference below 1e-5 (relative above magnitude 1)."""
    assert list(actual) == list(expected)
    for level, reference in expected.items():
        assert actual[level].shape == reference.shape, level
        scale = max(1.0, reference.abs().max().item())
        error = (actual[level] - reference).abs().max().item()
        assert error < 1e-5 * scale, f"{level}: max abs diff {error} (scale {scale})"


@pytest.fixture
def run_and_capture() -> Callable[[nn.Module, Tensor, dict[str, nn.Module]], dict[str, Tensor]]:
    """``run_and_capture(model, images, {level: sub_module}) -> {level: sub_module output}``."""
    return _run_and_capture


@pytest.fixture
def assert_features_close() -> Callable[[dict[str, Tensor], dict[str, Tensor]], None]:
    """``assert_features_close(actual, expected)`` for dicts of feature maps."""
    return _assert_features_close
