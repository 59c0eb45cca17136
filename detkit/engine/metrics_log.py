"""The JSON-lines metrics log of a run: ``metrics.jsonl``, one JSON object per line.

Training records (every ``train.log_period`` iterations)::

    {"type": "train", "iter": 20, "epoch": 0, "lr": 0.01, "loss_cls": 0.5, "loss_box": 0.2,
     "total_loss": 0.7, "time": 0.31, "data_time": 0.02}

``iter`` counts completed optimiser steps, losses are means over the period and over the ranks,
``time`` and ``data_time`` are seconds per iteration. Evaluation records::

    {"type": "eval", "iter": 1000, "epoch": 3, "bbox/AP": 0.31, "bbox/AP50": 0.52}

A run that a hook ends early (``train.patience``, ``Trainer.request_stop``) ends with::

    {"type": "stop", "iter": 1400, "epoch": 4, "reason": "early stopping: bbox/AP50 has not ..."}

With ``train.tensorboard`` the same records also go to TensorBoard
(:mod:`detkit.engine.tensorboard_log`).

When a run resumes from iteration ``k`` the records with ``iter > k`` (written after that
checkpoint by the interrupted run) are dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from detkit.utils.checkpoint import atomic_write_bytes

__all__ = ["MetricsLog", "read_metrics"]


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings ("nan", "inf"): JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends records to a JSON-lines file, one flushed line per record.

    Args:
        path: The log file (created with its folder if missing).
        resume_iteration: When resuming, drop existing records with ``iter`` beyond this.
    """

    def __init__(self, path: str | Path, resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_iteration is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r.get("iter", 0) <= resume_iteration]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write_bytes(self.path, text.encode())
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        self._handle.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics log; a truncated last line (a killed run) is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
