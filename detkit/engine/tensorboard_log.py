"""TensorBoard event files beside ``metrics.jsonl`` (``train.tensorboard=True``).

The same scalars as the metrics log (:mod:`detkit.engine.metrics_log`), at the same iterations:
a training record becomes ``train/<name>`` for every loss, ``total_loss``, ``lr``, ``time`` and
``data_time``; an evaluation record ``eval/<metric>``; a stop record a text entry ``stop``. The
files go in ``output_dir/tensorboard``; view them with ``tensorboard --logdir OUTPUT_DIR``.

TensorBoard is an optional dependency (``pip install tensorboard``, or the ``tensorboard`` extra
of detkit); asking for it without it installed fails at the start of the run with one line
(:class:`TensorBoardMissingError`). A resumed run hides the events after the checkpoint it resumes
from (``purge_step``), as the metrics log drops its records past that iteration.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TensorBoardLog", "TensorBoardMissingError", "require_tensorboard"]

KEY = "train.tensorboard"
_NOT_SCALARS = {"type", "iter", "epoch"}


class TensorBoardMissingError(ImportError, ValueError):
    """``train.tensorboard=True`` without the ``tensorboard`` package (an ImportError, and a
    ValueError so that the command line reports it in one line)."""


def require_tensorboard(key: str = KEY) -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line error naming ``key``.

    Raises:
        TensorBoardMissingError: the ``tensorboard`` package cannot be imported.
    """
    try:
        importlib.import_module("tensorboard")
        module = importlib.import_module("torch.utils.tensorboard")
    except ImportError as error:
        raise TensorBoardMissingError(
            f"{key}=True needs the tensorboard package, which is not installed ({error}); "
            "pip install tensorboard (or set train.tensorboard=False)",
            name="tensorboard") from None
    return module.SummaryWriter


class TensorBoardLog:
    """Writes metrics-log records as TensorBoard scalars.

    Args:
        log_dir: Folder of the event files (created when missing).
        resume_iteration: When resuming, hide earlier events with a step beyond this.
    """

    def __init__(self, log_dir: str | Path, resume_iteration: int | None = None) -> None:
        writer_class = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        purge = None if not resume_iteration else resume_iteration + 1
        self._writer = writer_class(log_dir=str(self.log_dir), purge_step=purge)

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record of the metrics log: ``type`` ("train", "eval" or "stop") and ``iter``
        as in :mod:`detkit.engine.metrics_log`; non-numeric values are skipped."""
        kind, step = record.get("type", "train"), int(record["iter"])
        if kind == "stop":
            self._writer.add_text("stop", str(record.get("reason", "")), step)
        else:
            for name, value in record.items():
                if name in _NOT_SCALARS or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"{kind}/{name}", float(value), step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
