"""Helpers shared by the dense-head tests."""

from __future__ import annotations

from collections.abc import Callable

import torch


def logit_sized_saved_tensors(loss_fn: Callable[[], object], logits: torch.Tensor) -> int:
    """How many tensors of the class logits' size autograd keeps for the backward of ``loss_fn()``."""
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn()
    return sum(1 for numel in saved if numel >= logits.numel())
