"""Preparing a model for training: freezing by name prefix, starting from a checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from detkit.utils.checkpoint import CheckpointError, LoadReport, load_weights

logger = logging.getLogger(__name__)

__all__ = ["freeze_by_prefix", "load_init_checkpoint"]


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def freeze_by_prefix(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    """Stop gradients of every parameter under the given module-name prefixes.

    ``"backbone.body.layer1"`` freezes that module and everything inside it. Calling it twice
    is harmless. The trainer keeps the returned modules in eval mode, so their BatchNorm
    statistics stay fixed too.

    Args:
        model: The (unwrapped) model.
        prefixes: Module-name prefixes (``train.freeze``).

    Returns:
        The frozen modules (the top-most module of each prefix).

    Raises:
        ValueError: a prefix matches no module; the message names ``train.freeze``.
    """
    frozen: list[nn.Module] = []
    names = dict(model.named_modules())
    for prefix in prefixes:
        matched = [(n, m) for n, m in names.items() if n and _matches(n, prefix)]
        if not matched:
            tops = sorted({n.split(".")[0] for n in names if n})
            raise ValueError(f"train.freeze: prefix {prefix!r} matches no module of "
                             f"{type(model).__name__}; top-level modules: {', '.join(tops)}")
        top = min(matched, key=lambda item: item[0].count("."))
        for _, module in matched:
            for param in module.parameters():
                param.requires_grad_(False)
        frozen.extend(m for n, m in matched if n.count(".") == top[0].count("."))
    count = sum(p.numel() for m in frozen for p in m.parameters())
    if prefixes:
        logger.info("froze %d parameters under %s", count, ", ".join(prefixes))
    return frozen


def load_init_checkpoint(model: nn.Module, path: str | Path) -> LoadReport:
    """Fine-tuning start: load the tensors of ``path`` that match ``model`` by name and shape.

    A detkit training checkpoint (weights under ``"model"``) or a plain state dict, read by
    :func:`detkit.utils.checkpoint.load_weights`. Missing, unexpected and shape-mismatched keys
    (e.g. a classifier for another number of classes) are listed by name in the returned report
    and the log. A file of which not one tensor fits (the weights of another model) is an error:
    training from it would silently start from scratch.

    Raises:
        CheckpointError: the file is missing, unreadable, or nothing in it fits ``model``; the
            message names ``train.init_checkpoint`` and the path.
    """
    try:
        report = load_weights(model, path)
    except CheckpointError as error:
        raise type(error)(f"train.init_checkpoint: {error}") from error
    if not report.loaded_keys and model.state_dict():
        raise CheckpointError(f"train.init_checkpoint: nothing in {path} fits the model "
                              f"({type(model).__name__}): " + "; ".join(report.problems()))
    return report
