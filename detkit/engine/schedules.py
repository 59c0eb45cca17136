"""Learning-rate schedules: a multiplier of each parameter group's base learning rate.

A schedule is a pure function of the training position, ``schedule(iteration, epoch) -> factor``,
and the trainer sets ``group["lr"] = group["base_lr"] * factor`` before every optimiser step
(``base_lr`` is written by :func:`detkit.engine.optim.build_optimizer`, backbone multiplier
included). Being a pure function of the position, a schedule resumes exactly from the iteration
stored in a checkpoint; its ``state_dict`` records its settings so that a resume with a different
schedule is reported.

Every schedule has a linear (or constant) warm-up over the first ``warmup_iters`` iterations,
always counted in iterations (detectron2's rule)::

    alpha  = iteration / warmup_iters
    warmup = warmup_factor * (1 - alpha) + alpha        (linear)
    warmup = warmup_factor                              (constant)
    factor = warmup * decay(t)      for iteration < warmup_iters, else decay(t)

``t`` is the iteration, or the epoch when ``by_epoch=True`` (the lr then changes at epoch
boundaries). The decays, with ``t`` as above:

=======================  ====================================================
``MultiStepLR``          ``gamma ** (number of milestones <= t)``
``CosineLR``             ``min_factor + (1 - min_factor) * (1 + cos(pi * min(t, max_t) / max_t)) / 2``
``PolynomialLR``         ``min_factor + (1 - min_factor) * (1 - min(t, max_t) / max_t) ** power``
``InverseTimeLR``        ``1 / (1 + k * t)``   (lr = alpha0 / (1 + k t), alpha0 = base lr)
``ExponentialLR``        ``gamma ** t``
``InverseSqrtLR``        ``1 / sqrt(1 + t / offset)`` (lr = k / sqrt(t) shifted so t = 0 is defined;
                         k = base lr * sqrt(offset))
``ConstantLR``           ``1``
=======================  ====================================================

Positions can follow the run's length instead of being fixed: ``CosineLR`` / ``PolynomialLR``
with ``max_t=None`` decay over the whole run, ``MultiStepLR(milestone_fractions=[2/3, 8/9])``
drops the lr at those fractions of it, and ``warmup_fraction=1000 / 90000`` warms up over that
fraction of ``max_iter`` (rounded to the nearest iteration). The lengths are the run's
``max_iter``, or its epochs with ``by_epoch``; the trainer passes them to :meth:`fit_to_run`
before the first step, so a ``train.max_iter`` override moves the whole schedule. A value given
in iterations (``max_t``, ``milestones``, ``warmup_iters``) always wins over a fraction, so an
explicit override is never rescaled; :meth:`fit_to_run` reports explicit positions that the run
never reaches (a warm-up longer than the run, a milestone past its end).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ConstantLR", "CosineLR", "ExponentialLR", "InverseSqrtLR", "InverseTimeLR", "LRSchedule",
    "MultiStepLR", "PolynomialLR",
]


class LRSchedule:
    """Base class: warm-up plus a decay implemented by :meth:`decay`.

    Args:
        warmup_iters: Number of warm-up iterations (0 for none); wins over ``warmup_fraction``.
        warmup_factor: Factor at iteration 0 of the warm-up.
        warmup_method: ``"linear"`` or ``"constant"``.
        by_epoch: Decay as a function of the epoch instead of the iteration.
        warmup_fraction: Warm-up length as a fraction of the run's ``max_iter`` in [0, 1), used
            when ``warmup_iters`` is not given (resolved by :meth:`fit_to_run`).
    """

    def __init__(self, warmup_iters: int | None = None, warmup_factor: float = 0.001,
                 warmup_method: str = "linear", by_epoch: bool = False,
                 warmup_fraction: float | None = None) -> None:
        if warmup_iters is not None and warmup_iters < 0:
            raise ValueError(f"lr_schedule.warmup_iters must be >= 0, got {warmup_iters}")
        if warmup_fraction is not None and not 0 <= warmup_fraction < 1:
            raise ValueError(f"lr_schedule.warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if warmup_method not in ("linear", "constant"):
            raise ValueError("lr_schedule.warmup_method must be 'linear' or 'constant', "
                             f"got {warmup_method!r}")
        self._explicit_warmup = warmup_iters
        self.warmup_iters = warmup_iters or 0
        self.warmup_fraction = warmup_fraction
        self.warmup_factor = warmup_factor
        self.warmup_method = warmup_method
        self.by_epoch = by_epoch

    def __call__(self, iteration: int, epoch: int = 0) -> float:
        """The lr multiplier for the optimiser step of ``iteration`` (0-based) in ``epoch``."""
        if self._explicit_warmup is None and self.warmup_fraction:
            self._require_fit("warmup_fraction")
        factor = self.decay(epoch if self.by_epoch else iteration)
        if iteration < self.warmup_iters:
            if self.warmup_method == "constant":
                factor *= self.warmup_factor
            else:
                alpha = iteration / self.warmup_iters
                factor *= self.warmup_factor * (1 - alpha) + alpha
        return factor

    def decay(self, t: int) -> float:
        """The decay multiplier at position ``t`` (iteration or epoch)."""
        raise NotImplementedError

    def fit_to_run(self, max_iter: int, max_epochs: int) -> list[str]:
        """Resolve the positions left to the run (``warmup_fraction``, ``max_t=None``,
        ``milestone_fractions``) for a run of ``max_iter`` iterations over ``max_epochs`` epochs.

        Args:
            max_iter: The run's optimiser steps.
            max_epochs: The epochs they span (the length of a ``by_epoch`` decay).

        Returns:
            Warnings about explicit positions the run never reaches (empty when none).
        """
        self._fitted = True
        if self._explicit_warmup is None and self.warmup_fraction is not None:
            self.warmup_iters = round(self.warmup_fraction * max_iter)
        unit = "epochs" if self.by_epoch else "iterations"
        length = max_epochs if self.by_epoch else max_iter
        problems = self._fit_length(length, unit)
        if self.warmup_iters >= max_iter:
            problems.insert(0, f"lr_schedule.warmup_iters={self.warmup_iters} is not shorter than "
                               f"the run ({max_iter} iterations): the lr never finishes warming up")
        return problems

    def _fit_length(self, length: int, unit: str) -> list[str]:
        """Resolve the decay's positions for a run of ``length`` units; returns warnings."""
        return []

    def _require_fit(self, what: str) -> None:
        if not getattr(self, "_fitted", False):
            raise RuntimeError(f"{type(self).__name__}: {what} follows the run's length; call "
                               "fit_to_run(max_iter, max_epochs) first (the Trainer does)")

    def state_dict(self) -> dict[str, Any]:
        """The schedule's kind and (resolved) settings (it has no other state)."""
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()
                    if not k.startswith("_")}
        return {"type": type(self).__name__, **settings}

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Compare with a saved schedule; the settings of this object are kept.

        Returns:
            Descriptions of the settings that differ (empty when the schedule is unchanged).
        """
        mine = self.state_dict()  # keys a checkpoint of an older version lacks are not compared
        return [f"{key}: checkpoint {state.get(key)!r}, now {value!r}"
                for key, value in mine.items() if key in state and state[key] != value]


class ConstantLR(LRSchedule):
    """The base learning rate after warm-up."""

    def decay(self, t: int) -> float:
        return 1.0


class MultiStepLR(LRSchedule):
    """Multiply by ``gamma`` at each milestone (the step schedule of detection papers).

    Args:
        milestones: Increasing iterations (or epochs with ``by_epoch``) where the lr drops; win
            over ``milestone_fractions``.
        gamma: Multiplier per milestone.
        milestone_fractions: Increasing fractions of the run in (0, 1] where the lr drops, used
            when ``milestones`` is not given (resolved by :meth:`fit_to_run`).
    """

    def __init__(self, milestones: Sequence[int] | None = None, gamma: float = 0.1,
                 milestone_fractions: Sequence[float] | None = None, **warmup: Any) -> None:
        super().__init__(**warmup)
        if milestones is None and milestone_fractions is None:
            raise ValueError("lr_schedule: give milestones (iterations or epochs) or "
                             "milestone_fractions (fractions of the run)")
        for name, values in (("milestones", milestones), ("milestone_fractions", milestone_fractions)):
            if values is not None and list(values) != sorted(values):
                raise ValueError(f"lr_schedule.{name} must be increasing, got {list(values)}")
        if milestone_fractions is not None and not all(0 < f <= 1 for f in milestone_fractions):
            raise ValueError("lr_schedule.milestone_fractions must be in (0, 1], got "
                             f"{list(milestone_fractions)}")
        self._explicit_milestones = milestones
        self.milestones = tuple(int(m) for m in milestones) if milestones is not None else None
        self.milestone_fractions = (None if milestone_fractions is None
                                    else tuple(float(f) for f in milestone_fractions))
        self.gamma = gamma

    def _fit_length(self, length: int, unit: str) -> list[str]:
        if self._explicit_milestones is None:
            assert self.milestone_fractions is not None
            self.milestones = tuple(round(f * length) for f in self.milestone_fractions)
            return []
        assert self.milestones is not None
        late = [m for m in self.milestones if m >= length]
        return [f"lr_schedule.milestones {late} are not before the end of the run ({length} "
                f"{unit}): those lr drops never happen"] if late else []

    def decay(self, t: int) -> float:
        if self.milestones is None:
            self._require_fit("milestone_fractions")
        return self.gamma ** bisect_right(self.milestones, t)


class _RunLengthDecay(LRSchedule):
    """A decay over ``max_t`` units; ``max_t=None`` is the run's length (set by fit_to_run)."""

    def __init__(self, max_t: int | None = None, **warmup: Any) -> None:
        super().__init__(**warmup)
        if max_t is not None and max_t <= 0:
            raise ValueError(f"lr_schedule.max_t must be > 0, got {max_t}")
        self._explicit_max_t = max_t
        self.max_t = max_t

    def _fit_length(self, length: int, unit: str) -> list[str]:
        if self._explicit_max_t is None:
            self.max_t = length
        elif self.max_t > length:
            return [f"lr_schedule.max_t={self.max_t} is longer than the run ({length} {unit}): "
                    f"the lr stops at {self.decay(length):.3g} x, above its floor"]
        return []

    def _progress(self, t: int) -> float:
        if self.max_t is None:
            self._require_fit("max_t=None")
        return min(t, self.max_t) / self.max_t


class CosineLR(_RunLengthDecay):
    """Half-cosine from 1 down to ``min_factor`` at ``max_t``, then flat.

    Args:
        max_t: Length of the decay (iterations, or epochs with ``by_epoch``); ``None``: the
            run's length.
        min_factor: Final multiplier.
    """

    def __init__(self, max_t: int | None = None, min_factor: float = 0.0, **warmup: Any) -> None:
        super().__init__(max_t, **warmup)
        self.min_factor = min_factor

    def decay(self, t: int) -> float:
        progress = self._progress(t)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class PolynomialLR(_RunLengthDecay):
    """``(1 - t / max_t) ** power`` from 1 down to ``min_factor`` (DeepLab's "poly").

    Args:
        max_t: Length of the decay (iterations, or epochs with ``by_epoch``); ``None``: the
            run's length.
        power: Exponent.
        min_factor: Final multiplier.
    """

    def __init__(self, max_t: int | None = None, power: float = 0.9, min_factor: float = 0.0,
                 **warmup: Any) -> None:
        super().__init__(max_t, **warmup)
        self.power = power
        self.min_factor = min_factor

    def decay(self, t: int) -> float:
        remaining = 1 - self._progress(t)
        return self.min_factor + (1 - self.min_factor) * remaining ** self.power


class InverseTimeLR(LRSchedule):
    """``alpha0 / (1 + k * t)``: the base lr is ``alpha0``.

    Args:
        k: Decay rate per unit of ``t``.
    """

    def __init__(self, k: float, **warmup: Any) -> None:
        super().__init__(**warmup)
        if k < 0:
            raise ValueError(f"lr_schedule.k must be >= 0, got {k}")
        self.k = k

    def decay(self, t: int) -> float:
        return 1.0 / (1.0 + self.k * t)


class ExponentialLR(LRSchedule):
    """``gamma ** t``.

    Args:
        gamma: Multiplier per unit of ``t`` (per epoch with ``by_epoch``).
    """

    def __init__(self, gamma: float, **warmup: Any) -> None:
        super().__init__(**warmup)
        if not 0 < gamma <= 1:
            raise ValueError(f"lr_schedule.gamma must be in (0, 1], got {gamma}")
        self.gamma = gamma

    def decay(self, t: int) -> float:
        return self.gamma ** t


class InverseSqrtLR(LRSchedule):
    """``k / sqrt(t)``, shifted so that ``t = 0`` is defined: ``1 / sqrt(1 + t / offset)``.

    With base lr ``b`` the lr is ``b * sqrt(offset) / sqrt(offset + t)``: the classic
    ``k / sqrt(t)`` with ``k = b * sqrt(offset)``, started at ``t = offset`` instead of 0.

    Args:
        offset: Units of ``t`` at which the lr has fallen by ``1 / sqrt(2)``.
    """

    def __init__(self, offset: float = 1.0, **warmup: Any) -> None:
        super().__init__(**warmup)
        if offset <= 0:
            raise ValueError(f"lr_schedule.offset must be > 0, got {offset}")
        self.offset = offset

    def decay(self, t: int) -> float:
        return 1.0 / math.sqrt(1.0 + t / self.offset)
