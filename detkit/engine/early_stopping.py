"""Early stopping on an evaluation metric: a hook that asks the trainer to stop.

``train.patience=N`` (with ``train.best_metric`` and ``train.best_mode``) makes the trainer put an
:class:`EarlyStopping` hook first in its hook list. After each evaluation the hook compares the
metric with the best value so far (strictly better, as ``model_best.pth`` is chosen); after
``patience`` evaluations in a row without an improvement it calls
:meth:`detkit.engine.trainer.Trainer.request_stop`, and the run ends as a normal end does: the
final evaluation (when the last step was not just evaluated), ``model_final.pth``, a ``"stop"``
record in ``metrics.jsonl`` naming the reason.

The hook's counters are part of every checkpoint (``state_dict``), so an interrupted run that
resumes makes the same decisions as an uninterrupted one, and resuming a run that stopped early
stops again at once (raise ``train.patience`` to continue it).

The same class can be used directly as a hook, e.g. on another metric::

    train.hooks = [L(EarlyStopping)(metric="bbox/AP50", patience=5, mode="max")]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from detkit.engine.hooks import Hook
from detkit.utils.distributed import is_main_process

if TYPE_CHECKING:
    from detkit.engine.trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["EarlyStopping"]


class EarlyStopping(Hook):
    """Stop training after ``patience`` evaluations without an improvement of ``metric``.

    Args:
        metric: Name of the evaluation metric (a key of the evaluator's result).
        patience: Evaluations in a row without an improvement that stop the run (>= 1).
        mode: ``"max"`` (higher is better) or ``"min"``.
        min_delta: Smallest change that counts as an improvement (>= 0; 0: any strict gain).

    The decision is taken from rank 0's metrics (other ranks may receive ``{}``); the trainer
    makes every rank stop together.
    """

    def __init__(self, metric: str, patience: int, mode: str = "max",
                 min_delta: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 1, got {patience!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping: mode must be 'max' or 'min', got {mode!r}")
        if not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        self.metric = metric
        self.patience = patience
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_iteration: int | None = None
        self.bad_evaluations = 0

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def before_train(self, trainer: Trainer) -> None:
        """A resumed run that had already run out of patience stops again at once."""
        if self.bad_evaluations >= self.patience:
            trainer.request_stop(self._reason() + " (restored from the checkpoint; raise "
                                 "train.patience to continue)")

    def after_eval(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        """Count an evaluation without an improvement; ask for a stop when out of patience.

        Raises:
            KeyError: ``metric`` is not among rank 0's metrics.
        """
        if not is_main_process():
            return
        if self.metric not in metrics:
            raise KeyError(f"early stopping: metric {self.metric!r} is not among the "
                           f"evaluator's metrics: {', '.join(sorted(metrics)) or '(none)'}")
        value = float(metrics[self.metric])
        if self._improves(value):
            self.best, self.best_iteration, self.bad_evaluations = value, trainer.iteration, 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            trainer.request_stop(self._reason())

    def _reason(self) -> str:
        best = "none" if self.best is None else f"{self.best:.6g}"
        return (f"early stopping: {self.metric} has not improved ({self.mode}) for "
                f"{self.bad_evaluations} evaluation(s) (train.patience={self.patience}); best "
                f"{best} at iteration {self.best_iteration}")

    def state_dict(self) -> dict[str, Any]:
        """The counters (plain values), stored in every checkpoint."""
        return {"metric": self.metric, "mode": self.mode, "best": self.best,
                "best_iteration": self.best_iteration, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the counters; those of another metric or mode are ignored (with a warning)."""
        if state.get("metric") != self.metric or state.get("mode") != self.mode:
            logger.warning("early stopping: the checkpoint counted %s (%s), now %s (%s): "
                           "counting starts afresh", state.get("metric"), state.get("mode"),
                           self.metric, self.mode)
            return
        self.best = state.get("best")
        self.best_iteration = state.get("best_iteration")
        self.bad_evaluations = int(state.get("bad_evaluations", 0))
