"""Training checkpoints: atomic writes, the last k kept, the best kept, resume lookup.

A checkpoint is a dict of tensors and plain Python values (see docs/conventions.md): ``model``
(the weights the trainer evaluates: the EMA when ``train.ema`` is used for evaluation, else the
trained weights), ``model_raw`` (with the EMA: the trained weights, which resume restores),
``optimizer``, ``scheduler``, ``scaler``, ``ema``, ``rng``, ``iteration``, ``epoch``, ``config``,
``meta``, and ``best`` (the best metric seen so far). Files in the output folder:

- ``model_{iteration:07d}.pth``: periodic checkpoints; only the last ``keep_last`` are kept.
- ``model_final.pth``: written when training ends.
- ``model_best.pth``: the checkpoint with the best evaluation metric so far.
- ``last_checkpoint``: a one-line text file naming the newest checkpoint (what
  ``--resume auto`` reads).

Every file is written atomically and read with ``weights_only=True`` by
:mod:`detkit.utils.checkpoint` (the one checkpoint module; ``atomic_write_bytes``,
``atomic_torch_save`` and ``load_checkpoint`` here are its functions under their engine names).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detkit.utils.checkpoint import atomic_write_bytes, read_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["Checkpointer", "atomic_write_bytes", "atomic_torch_save", "load_checkpoint"]

_PERIODIC = re.compile(r"^model_(\d{7,})\.pth$")
LAST_CHECKPOINT_FILE = "last_checkpoint"


# The engine's names for the functions of detkit.utils.checkpoint (same objects).
load_checkpoint = read_checkpoint
atomic_torch_save = save_checkpoint


class Checkpointer:
    """Writes the checkpoints of one run into ``output_dir`` and prunes old periodic ones.

    Args:
        output_dir: The run's output folder.
        keep_last: How many periodic checkpoints to keep (older ones are deleted); 0 keeps all.
    """

    def __init__(self, output_dir: str | Path, keep_last: int = 3) -> None:
        if keep_last < 0:
            raise ValueError(f"train.keep_last must be >= 0, got {keep_last}")
        self.output_dir = Path(output_dir)
        self.keep_last = keep_last

    def periodic_path(self, iteration: int) -> Path:
        """Path of the periodic checkpoint after ``iteration`` iterations."""
        return self.output_dir / f"model_{iteration:07d}.pth"

    @property
    def final_path(self) -> Path:
        """Path of the checkpoint written when training ends."""
        return self.output_dir / "model_final.pth"

    @property
    def best_path(self) -> Path:
        """Path of the best checkpoint."""
        return self.output_dir / "model_best.pth"

    def save(self, state: Mapping[str, Any], path: Path) -> Path:
        """Write ``state`` to ``path`` atomically, record it as the latest and prune old files."""
        save_checkpoint(state, path)
        atomic_write_bytes(self.output_dir / LAST_CHECKPOINT_FILE, (path.name + "\n").encode())
        logger.info("saved checkpoint %s", path)
        self._prune()
        return path

    def save_best(self, state: Mapping[str, Any]) -> Path:
        """Write ``state`` as the best checkpoint (``last_checkpoint`` is left as it is)."""
        save_checkpoint(state, self.best_path)
        logger.info("saved best checkpoint %s", self.best_path)
        return self.best_path

    def periodic_checkpoints(self) -> list[tuple[int, Path]]:
        """``(iteration, path)`` of the periodic checkpoints present, oldest first."""
        if not self.output_dir.is_dir():
            return []
        found = []
        for path in self.output_dir.iterdir():
            match = _PERIODIC.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest checkpoint of the run: the one ``last_checkpoint`` names, else the
        periodic checkpoint with the highest iteration, else ``None``."""
        pointer = self.output_dir / LAST_CHECKPOINT_FILE
        if pointer.is_file():
            candidate = self.output_dir / pointer.read_text().strip()
            if candidate.is_file():
                return candidate
        periodic = self.periodic_checkpoints()
        return periodic[-1][1] if periodic else None

    def _prune(self) -> None:
        if self.keep_last == 0:
            return
        for _, path in self.periodic_checkpoints()[: -self.keep_last]:
            path.unlink(missing_ok=True)
            logger.debug("deleted old checkpoint %s", path)
