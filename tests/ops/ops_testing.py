"""Input generators shared by the op tests."""

from __future__ import annotations

import torch


def random_boxes(num: int, *, dtype: torch.dtype = torch.float32, canvas: float = 1000.0, max_size: float = 200.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``[num, 4]`` xyxy boxes with top-left corners uniform on the canvas and sides in [1, max_size + 1)."""
    corner = torch.rand(num, 2, generator=generator, dtype=torch.float64) * canvas
    size = torch.rand(num, 2, generator=generator, dtype=torch.float64) * max_size + 1
    return torch.cat([corner, corner + size], dim=1).to(dtype)
