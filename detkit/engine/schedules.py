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
        warmup_iters: Number of warm-up iterations (0 for none).
        warmup_factor: Factor at iteration 0 of the warm-up.
        warmup_method: ``"linear"`` or ``"constant"``.
        by_epoch: Decay as a function of the epoch instead of the iteration.
    """

    def __init__(self, warmup_iters: int = 0, warmup_factor: float = 0.001,
                 warmup_method: str = "linear", by_epoch: bool = False) -> None:
        if warmup_iters < 0:
            raise ValueError(f"lr_schedule.warmup_iters must be >= 0, got {warmup_iters}")
        if warmup_method not in ("linear", "constant"):
            raise ValueError("lr_schedule.warmup_method must be 'linear' or 'constant', "
                             f"got {warmup_method!r}")
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.warmup_method = warmup_method
        self.by_epoch = by_epoch

    def __call__(self, iteration: int, epoch: int = 0) -> float:
        """The lr multiplier for the optimiser step of ``iteration`` (0-based) in ``epoch``."""
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

    def state_dict(self) -> dict[str, Any]:
        """The schedule's kind and settings (it has no other state)."""
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}
        return {"type": type(self).__name__, **settings}

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Compare with a saved schedule; the settings of this object are kept.

        Returns:
            Descriptions of the settings that differ (empty when the schedule is unchanged).
        """
        mine = self.state_dict()
        return [f"{key}: checkpoint {state.get(key)!r}, now {value!r}"
                for key, value in mine.items() if state.get(key) != value]


class ConstantLR(LRSchedule):
    """The base learning rate after warm-up."""

    def decay(self, t: int) -> float:
        return 1.0


class MultiStepLR(LRSchedule):
    """Multiply by ``gamma`` at each milestone (the step schedule of detection papers).

    Args:
        milestones: Increasing iterations (or epochs with ``by_epoch``) where the lr drops.
        gamma: Multiplier per milestone.
    """

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, **warmup: Any) -> None:
        super().__init__(**warmup)
        if list(milestones) != sorted(milestones):
            raise ValueError(f"lr_schedule.milestones must be increasing, got {list(milestones)}")
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = gamma

    def decay(self, t: int) -> float:
        return self.gamma ** bisect_right(self.milestones, t)


class CosineLR(LRSchedule):
    """Half-cosine from 1 down to ``min_factor`` at ``max_t``, then flat.

    Args:
        max_t: Length of the decay (iterations, or epochs with ``by_epoch``).
        min_factor: Final multiplier.
    """

    def __init__(self, max_t: int, min_factor: float = 0.0, **warmup: Any) -> None:
        super().__init__(**warmup)
        if max_t <= 0:
            raise ValueError(f"lr_schedule.max_t must be > 0, got {max_t}")
        self.max_t = max_t
        self.min_factor = min_factor

    def decay(self, t: int) -> float:
        progress = min(t, self.max_t) / self.max_t
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class PolynomialLR(LRSchedule):
    """``(1 - t / max_t) ** power`` from 1 down to ``min_factor`` (DeepLab's "poly").

    Args:
        max_t: Length of the decay (iterations, or epochs with ``by_epoch``).
        power: Exponent.
        min_factor: Final multiplier.
    """

    def __init__(self, max_t: int, power: float = 0.9, min_factor: float = 0.0,
                 **warmup: Any) -> None:
        super().__init__(**warmup)
        if max_t <= 0:
            raise ValueError(f"lr_schedule.max_t must be > 0, got {max_t}")
        self.max_t = max_t
        self.power = power
        self.min_factor = min_factor

    def decay(self, t: int) -> float:
        remaining = 1 - min(t, self.max_t) / self.max_t
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
