"""Exponential moving average of model weights (YOLOv5 / timm ``ModelEmaV2`` style).

After every optimiser step ``ema = d * ema + (1 - d) * weights`` for floating-point parameters and
buffers, with a decay that warms up so the average does not stay stuck at the random
initialisation::

    d = decay * (1 - exp(-updates / tau))

Integer buffers (BatchNorm's ``num_batches_tracked``) are copied. The averaged copy lives on the
model's device, in eval mode, without gradients.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """A moving-average copy of a model.

    Args:
        model: The (unwrapped) model being trained.
        decay: Asymptotic decay, e.g. 0.9999.
        tau: Warm-up length of the decay, in updates (2000 in YOLOv5).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema.decay must be in [0, 1), got {decay}")
        if tau <= 0:
            raise ValueError(f"train.ema.tau must be > 0, got {tau}")
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update will use."""
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture, unwrapped) into the average."""
        d = self.current_decay()
        self.updates += 1
        current = model.state_dict()
        for key, averaged in self.module.state_dict().items():
            value = current[key].detach()
            if averaged.dtype.is_floating_point:
                averaged.mul_(d).add_(value.to(averaged.dtype), alpha=1.0 - d)
            else:
                averaged.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """``{"model": averaged state dict, "updates": int, "decay": float, "tau": float}``."""
        return {"model": self.module.state_dict(), "updates": self.updates,
                "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the average and the update count (decay and tau stay as configured)."""
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
