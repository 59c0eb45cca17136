"""Helpers shared by the SSD tests: torchvision twins with the same weights, real images, comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from detkit.config import instantiate
from detkit.models.convert.torchvision_ssd import convert_torchvision_ssd

IMAGES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "images"


def load_image(name: str) -> Tensor:
    """A test image as ``[3, H, W]`` float RGB in [0, 1]."""
    pixels = np.asarray(Image.open(IMAGES_DIR / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def perturb_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d random, non-trivial statistics and affine parameters (in place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = (module.num_features,)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    return model


def healthy_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Variance-preserving conv weights and perturbed BatchNorm statistics (in place).

    SSDLite's initialisation (N(0, 0.03) convs, BatchNorm at mean 0 / variance 1) makes the
    eval-mode features vanish into denormal floats: slow on CPU, and class scores tied across
    cells, so detections have no well-defined order. These weights keep the image in the features.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in")
    return perturb_batch_norms(model, seed)


def detkit_twin(torchvision_model: nn.Module, arch: str, config: object) -> nn.Module:
    """Instantiate ``config`` (a detkit L() tree) and load the converted torchvision weights strictly."""
    model = instantiate(config)
    checkpoint = convert_torchvision_ssd(torchvision_model.state_dict(), arch)
    result = model.load_state_dict(checkpoint["model"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def assert_same_detections(expected: list[dict[str, Tensor]], actual: list[dict[str, Tensor]], min_count: int) -> None:
    """torchvision's detections (labels with background 0) equal detkit's (0-based labels).

    Boxes within 1e-3 px, scores within 1e-5, and at least ``min_count`` detections per image.
    """
    assert len(expected) == len(actual)
    for reference, detection in zip(expected, actual):
        assert reference["boxes"].shape[0] >= min_count
        assert detection["boxes"].shape == reference["boxes"].shape
        torch.testing.assert_close(detection["labels"], reference["labels"] - 1, rtol=0, atol=0)
        torch.testing.assert_close(detection["scores"], reference["scores"], rtol=0, atol=1e-5)
        torch.testing.assert_close(detection["boxes"], reference["boxes"], rtol=0, atol=1e-3)
