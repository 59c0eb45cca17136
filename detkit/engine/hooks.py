"""Hooks: user code run by the trainer at fixed points of the loop.

The trainer's own duties (metrics log, evaluation, checkpoints) run first at every point, then
the hooks in list order (the built-in early stopping hook first). A hook reads the trainer's
public state (``iteration``: completed optimiser steps; ``epoch``; ``max_iter``; ``model``
(possibly DDP-wrapped); ``unwrapped_model``; ``optimizer``; ``settings``; ``output_dir``;
``last_loss``: total loss of the last step; ``stop_reason``: None, or why a stop was requested)
and must not change the training randomness if the run is to stay reproducible. Hooks run on
every rank; use :func:`detkit.utils.distributed.is_main_process` to write files on rank 0 only.

Any hook may end the run from any of its methods with ``trainer.request_stop(reason)``: the
trainer finishes the current step, then ends as a normal end does (the final evaluation unless
the last step was just evaluated, ``model_final.pth``, ``after_train``), logs the reason and
writes it to ``metrics.jsonl`` (a ``{"type": "stop", "iter", "epoch", "reason"}`` record) and to
the final checkpoint (``stop_reason``). Under torch.distributed a request on any rank stops every
rank after the same step. Early stopping (``train.patience``,
:class:`detkit.engine.early_stopping.EarlyStopping`) is such a hook.

A hook with state that a resumed run needs returns it from ``state_dict`` (plain values:
numbers, strings, lists, dicts); the trainer stores it in every checkpoint and hands it back to
``load_state_dict`` on resume.

In a config: ``train.hooks = [L(MyHook)(every=100)]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detkit.engine.trainer import Trainer

__all__ = ["Hook", "hook_states", "load_hook_states"]


class Hook:
    """Base class; override any of the methods (the defaults do nothing)."""

    def before_train(self, trainer: Trainer) -> None:
        """After the model, optimiser and (on resume) the checkpoint are in place."""

    def after_step(self, trainer: Trainer) -> None:
        """After optimiser step ``trainer.iteration`` (1-based count of completed steps)."""

    def after_eval(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        """After each evaluation (periodic and final) at iteration ``trainer.iteration``, once
        its metrics are logged and ``model_best.pth`` is written when they improved.

        Args:
            trainer: The trainer.
            metrics: Metric name to value on rank 0 (other ranks may receive ``{}``).
        """

    def after_train(self, trainer: Trainer) -> None:
        """After the final checkpoint and evaluation (not called when training raised)."""

    def state_dict(self) -> dict[str, Any]:
        """State a resumed run needs, stored in checkpoints (``{}``: nothing to store)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called on resume, before ``before_train``)."""


def _hook_keys(hooks: Sequence[Any]) -> list[str]:
    """A checkpoint key per hook: its class name, numbered from the second of a class on."""
    keys, seen = [], {}
    for hook in hooks:
        name = type(hook).__qualname__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def hook_states(hooks: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """``{key: state}`` of the hooks whose ``state_dict()`` is not empty (for a checkpoint);
    the key is the hook's class name (``Name#2`` for the second hook of a class)."""
    states = {}
    for key, hook in zip(_hook_keys(hooks), hooks):
        state = hook.state_dict() if hasattr(hook, "state_dict") else {}
        if state:
            states[key] = dict(state)
    return states


def load_hook_states(hooks: Sequence[Any], states: Mapping[str, Mapping[str, Any]]) -> None:
    """Hand each hook the state :func:`hook_states` stored for it (hooks with none are left)."""
    for key, hook in zip(_hook_keys(hooks), hooks):
        if key in states and hasattr(hook, "load_state_dict"):
            hook.load_state_dict(states[key])
