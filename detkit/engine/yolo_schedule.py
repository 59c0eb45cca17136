"""ultralytics' learning-rate and momentum schedule (YOLOv5 / v8 / 11): a per-group warm-up, then a
linear decay by epoch.

With ``E`` the run's epochs, ``lrf`` the final fraction and ``e`` the epoch, every group's learning
rate is ``base_lr * lf(e)``, ``lf(e) = (1 - e / E) * (1 - lrf) + lrf`` (ultralytics' ``lf`` with
``cos_lr=False``). During the first ``W = round(min(warmup_epochs, E - 1) * iterations per
epoch)`` iterations, at iteration ``i <= W`` (linear interpolation on ``[0, W]``, as
ultralytics' ``np.interp``):

- the group tagged ``"param_group": "bias"`` (:func:`detkit.engine.optim.build_optimizer` with
  ``bias_group=True``) goes from ``base_lr * warmup_bias_factor`` down to ``base_lr * lf(e)``;
  every other group from 0 up to ``base_lr * lf(e)``;
- the momentum of SGD groups goes from ``warmup_momentum`` up to the group's own momentum (kept in
  the group as ``base_momentum``).

ultralytics states the bias start as an absolute ``warmup_bias_lr`` (0.1 for ``lr0`` 0.01):
``warmup_bias_factor = warmup_bias_lr / lr0`` (10). ultralytics counts warm-up in batches and
detkit in optimiser steps; without gradient accumulation they are the same.

The trainer sets every group's lr from :meth:`__call__` (``lf(e)``), then calls
:meth:`adjust_param_groups`, which does the warm-up. Like every detkit schedule it is a pure
function of (iteration, epoch), so it resumes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detkit.engine.schedules import LRSchedule

__all__ = ["YOLOLinearLR"]


class YOLOLinearLR(LRSchedule):
    """Linear decay by epoch to ``lrf`` with ultralytics' per-group lr and momentum warm-up.

    Args:
        lrf: Final learning-rate fraction (ultralytics' ``lrf``, 0.01).
        warmup_epochs: Warm-up length in epochs (``warmup_epochs``, 3.0; fractions allowed),
            capped to leave the last epoch out of it.
        warmup_bias_factor: Start of the bias group's lr, times its base lr (``warmup_bias_lr /
            lr0``: 0.1 / 0.01 = 10).
        warmup_momentum: Momentum at iteration 0 (``warmup_momentum``, 0.8).
        max_epochs: ``E``; None: the run's epochs (set by ``fit_to_run``).
    """

    def __init__(
        self,
        lrf: float = 0.01,
        warmup_epochs: float = 3.0,
        warmup_bias_factor: float = 10.0,
        warmup_momentum: float = 0.8,
        max_epochs: int | None = None,
    ) -> None:
        super().__init__(warmup_iters=0, by_epoch=True)
        if not 0 <= lrf <= 1:
            raise ValueError(f"lr_schedule.lrf must be in [0, 1], got {lrf}")
        if warmup_epochs < 0:
            raise ValueError(f"lr_schedule.warmup_epochs must be >= 0, got {warmup_epochs}")
        if max_epochs is not None and max_epochs <= 0:
            raise ValueError(f"lr_schedule.max_epochs must be > 0, got {max_epochs}")
        self.lrf = lrf
        self.warmup_epochs = warmup_epochs
        self.warmup_bias_factor = warmup_bias_factor
        self.warmup_momentum = warmup_momentum
        self._explicit_max_epochs = max_epochs
        self.max_epochs = max_epochs
        self.yolo_warmup_iters: int | None = None

    def fit_to_run(self, max_iter: int, max_epochs: int) -> list[str]:
        """Resolve ``max_epochs`` (when not given) and the warm-up length for the run."""
        self._fitted = True
        if self._explicit_max_epochs is None:
            self.max_epochs = max_epochs
        assert self.max_epochs is not None
        warmup_epochs = min(self.warmup_epochs, max(self.max_epochs - 1, 0))
        self.yolo_warmup_iters = round(warmup_epochs * max_iter / max_epochs) if warmup_epochs > 0 else 0
        if self.max_epochs > max_epochs:
            return [(f"lr_schedule.max_epochs={self.max_epochs} is longer than the run ({max_epochs} epochs): the lr "
                     f"stops at {self.decay(max_epochs):.3g} x, above lrf={self.lrf}")]
        return []

    def decay(self, t: int) -> float:
        if self.max_epochs is None:
            self._require_fit("max_epochs=None")
        assert self.max_epochs is not None
        return max(1 - t / self.max_epochs, 0) * (1.0 - self.lrf) + self.lrf

    def adjust_param_groups(self, groups: Sequence[dict[str, Any]], iteration: int, epoch: int) -> None:
        """The warm-up of each group's lr and momentum for the step of ``iteration`` (0-based).

        Args:
            groups: ``optimizer.param_groups`` (their ``lr`` already ``base_lr * lf(epoch)``).
            iteration: Completed optimiser steps before this one.
            epoch: The epoch of this step.
        """
        if self.yolo_warmup_iters is None:
            self._require_fit("the warm-up length")
        for group in groups:
            if "momentum" in group:
                group.setdefault("base_momentum", group["momentum"])
        warmup = self.yolo_warmup_iters or 0
        if not warmup or iteration > warmup:
            return
        alpha = iteration / warmup
        target = self.decay(epoch)
        for group in groups:
            start = group["base_lr"] * self.warmup_bias_factor if group.get("param_group") == "bias" else 0.0
            group["lr"] = start + (group["base_lr"] * target - start) * alpha
            if "momentum" in group:
                momentum = group["base_momentum"]
                group["momentum"] = self.warmup_momentum + (momentum - self.warmup_momentum) * alpha
