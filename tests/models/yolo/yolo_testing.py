"""Helpers shared by the YOLO tests (a unique basename: importable from any test folder)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

TESTS_DIR = Path(__file__).resolve().parents[2]
YOLO_DATA = TESTS_DIR / "fixtures" / "yolo"
IMAGES = TESTS_DIR / "fixtures" / "images"


def load_rgb(name: str) -> torch.Tensor:
    """A test image as ``[3, H, W]`` float RGB in [0, 1]."""
    bgr = cv2.imread(str(IMAGES / name))
    assert bgr is not None, name
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255


def perturb_batchnorms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random batch-norm statistics and affine values, so that a wrong order or eps shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.running_mean.shape
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    return model
