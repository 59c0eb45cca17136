"""Hooks: user code run by the trainer at fixed points of the loop.

The trainer's own duties (metrics log, evaluation, checkpoints) run first at every point, then
the hooks in list order. A hook reads the trainer's public state (``iteration``: completed
optimiser steps; ``epoch``; ``max_iter``; ``model`` (possibly DDP-wrapped); ``unwrapped_model``;
``optimizer``; ``settings``; ``output_dir``; ``last_loss``: total loss of the last step) and
must not change the training randomness if the run is to stay reproducible. Hooks run on every rank; use
:func:`detkit.utils.distributed.is_main_process` to write files on rank 0 only.

In a config: ``train.hooks = [L(MyHook)(every=100)]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detkit.engine.trainer import Trainer

__all__ = ["Hook"]


class Hook:
    """Base class; override any of the methods (the defaults do nothing)."""

    def before_train(self, trainer: Trainer) -> None:
        """After the model, optimiser and (on resume) the checkpoint are in place."""

    def after_step(self, trainer: Trainer) -> None:
        """After optimiser step ``trainer.iteration`` (1-based count of completed steps)."""

    def after_train(self, trainer: Trainer) -> None:
        """After the final checkpoint and evaluation (not called when training raised)."""
