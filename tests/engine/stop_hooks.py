"""A hook for the engine tests that asks for a stop on one rank only (configs import it as
``stop_hooks``; ``tests/engine`` is on PYTHONPATH there)."""

from __future__ import annotations

from typing import Any

from detkit.engine.hooks import Hook
from detkit.utils.distributed import get_rank


class StopOnRank(Hook):
    """Calls ``trainer.request_stop`` after step ``iteration`` on rank ``rank`` only."""

    def __init__(self, rank: int, iteration: int) -> None:
        self.rank, self.iteration = rank, iteration

    def after_step(self, trainer: Any) -> None:
        if get_rank() == self.rank and trainer.iteration == self.iteration:
            trainer.request_stop(f"rank {self.rank} asked at iteration {self.iteration}")
