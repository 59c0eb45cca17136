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

``--resume auto`` takes :meth:`Checkpointer.latest_intact`: the newest checkpoint that reads back
as a training checkpoint; a truncated or unreadable newer one is skipped with a warning naming it.
A process killed inside an atomic write leaves its temporary file (``.model_final.pth.*.tmp``);
the next :class:`Checkpointer` of the folder (the next run) removes those of its own files and
logs each. :func:`strip_checkpoint` keeps what :func:`detkit.load` needs of a training checkpoint.

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

import torch

from detkit.utils.checkpoint import (
    CheckpointError, atomic_write_bytes, read_checkpoint, save_checkpoint, temp_file_target,
)
from detkit.utils.distributed import is_main_process

logger = logging.getLogger(__name__)

__all__ = ["Checkpointer", "TRAINING_STATE_KEYS", "atomic_torch_save", "atomic_write_bytes",
           "load_checkpoint", "strip_checkpoint"]

_PERIODIC = re.compile(r"^model_(\d{7,})\.pth$")
LAST_CHECKPOINT_FILE = "last_checkpoint"
FINAL_FILE, BEST_FILE = "model_final.pth", "model_best.pth"
# What a checkpoint needs for a resume (Trainer.resume reads these).
TRAINING_STATE_KEYS = ("model", "optimizer", "iteration", "rng")


# The engine's names for the functions of detkit.utils.checkpoint (same objects).
load_checkpoint = read_checkpoint
atomic_torch_save = save_checkpoint


class Checkpointer:
    """Writes the checkpoints of one run into ``output_dir`` and prunes old periodic ones.

    Args:
        output_dir: The run's output folder.
        keep_last: How many periodic checkpoints to keep (older ones are deleted); 0 keeps all.
        remove_stale: Remove the temporary files that an interrupted write of this folder's
            checkpoint files left behind (:meth:`remove_stale_temp_files`; on the main process).
    """

    def __init__(self, output_dir: str | Path, keep_last: int = 3, remove_stale: bool = True) -> None:
        if keep_last < 0:
            raise ValueError(f"train.keep_last must be >= 0, got {keep_last}")
        self.output_dir = Path(output_dir)
        self.keep_last = keep_last
        if remove_stale and is_main_process():
            self.remove_stale_temp_files()

    @staticmethod
    def is_own_file(name: str) -> bool:
        """Whether ``name`` is one of the files a Checkpointer writes."""
        return bool(_PERIODIC.match(name)) or name in (FINAL_FILE, BEST_FILE, LAST_CHECKPOINT_FILE)

    def stale_temp_files(self) -> list[Path]:
        """Temporary files of interrupted atomic writes of this folder's checkpoint files
        (``.model_0000010.pth.k3x_9a0q.tmp``); other files are never listed."""
        if not self.output_dir.is_dir():
            return []
        return sorted(path for path in self.output_dir.iterdir()
                      if path.is_file() and self.is_own_file(temp_file_target(path.name) or ""))

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete :meth:`stale_temp_files` (a process killed while writing leaves them; the
        target file itself is intact, old or new) and log one line for each.

        Returns:
            The files removed.
        """
        removed = []
        for path in self.stale_temp_files():
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                logger.warning("cannot remove stale temporary file %s: %s", path, error.strerror or error)
                continue
            logger.warning("removed stale temporary file %s (a checkpoint write was interrupted)", path)
            removed.append(path)
        return removed

    def periodic_path(self, iteration: int) -> Path:
        """Path of the periodic checkpoint after ``iteration`` iterations."""
        return self.output_dir / f"model_{iteration:07d}.pth"

    @property
    def final_path(self) -> Path:
        """Path of the checkpoint written when training ends."""
        return self.output_dir / FINAL_FILE

    @property
    def best_path(self) -> Path:
        """Path of the best checkpoint."""
        return self.output_dir / BEST_FILE

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

    def resume_candidates(self) -> list[Path]:
        """The checkpoints a resume may start from, newest first: :meth:`latest`, then the
        periodic checkpoints by decreasing iteration."""
        latest = self.latest()
        older = [path for _, path in reversed(self.periodic_checkpoints()) if path != latest]
        return ([latest] if latest is not None else []) + older

    def latest_intact(self) -> Path | None:
        """The newest checkpoint that reads back as a training checkpoint (the keys of
        :data:`TRAINING_STATE_KEYS`); each newer one that does not (truncated, corrupt, not a
        training checkpoint) is skipped with a one-line warning naming it.

        Returns:
            The checkpoint, or ``None`` when the folder holds none (a fresh start).

        Raises:
            CheckpointError: there are checkpoints, but not one of them is intact (a fresh start
                would silently throw the run away); the message names the folder and the files.
        """
        candidates = self.resume_candidates()
        for path in candidates:
            problem = _resume_problem(path)
            if problem is None:
                return path
            logger.warning("--resume auto: skipping %s: %s", path, problem)
        if candidates:
            raise CheckpointError(f"--resume auto: no intact checkpoint in {self.output_dir} (unreadable: "
                                  f"{', '.join(path.name for path in candidates)}); resume from another "
                                  "file with --resume PATH, or start over with --overwrite")
        return None

    def _prune(self) -> None:
        if self.keep_last == 0:
            return
        for _, path in self.periodic_checkpoints()[: -self.keep_last]:
            path.unlink(missing_ok=True)
            logger.debug("deleted old checkpoint %s", path)


def _resume_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from, or ``None``."""
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        message = str(error)
        prefix = f"cannot read checkpoint {path}: "
        return message[len(prefix):] if message.startswith(prefix) else message
    missing = [key for key in TRAINING_STATE_KEYS if key not in checkpoint]
    return f"not a training checkpoint (no {', '.join(missing)})" if missing else None


# What detkit.load and a reader of the file need; the rest (optimizer, scheduler, scaler, ema,
# rng, model_raw, data_position) only serves a resume.
_KEPT_BY_STRIP = ("model_config", "class_names", "config")


def strip_checkpoint(checkpoint: Mapping[str, Any], *, raw: bool = False, half: bool = False,
                     source: str | Path = "<checkpoint>") -> dict[str, Any]:
    """The model weights of a training checkpoint, without the state only a resume needs.

    Keeps ``model`` (the weights training evaluated: the EMA when the run used it), the
    ``model_config`` and ``class_names`` that :func:`detkit.load` rebuilds the model from, the
    resolved ``config`` text and ``meta`` (with ``iteration``, ``best`` and what was stripped
    recorded in it); drops ``optimizer``, ``scheduler``, ``scaler``, ``ema``, ``rng``,
    ``model_raw`` and the data position.

    Args:
        checkpoint: What :func:`~detkit.utils.checkpoint.read_checkpoint` returned.
        raw: Keep the trained weights (``model_raw``, present when the run used an EMA) instead
            of the evaluated ones.
        half: Store floating-point tensors as float16 (loading casts them back to the model's
            dtype).
        source: The file it came from, for messages and ``meta["stripped_from"]``.

    Returns:
        The stripped checkpoint (new dicts; the tensors of ``checkpoint`` are shared unless
        ``half``).

    Raises:
        CheckpointError: no ``model`` state dict in ``checkpoint``.
    """
    weights_key = "model_raw" if raw and isinstance(checkpoint.get("model_raw"), Mapping) else "model"
    state = checkpoint.get(weights_key)
    if not isinstance(state, Mapping) or not state:
        have = ", ".join(map(str, checkpoint)) or "nothing"
        raise CheckpointError(f"{source}: no 'model' state dict to keep (it has: {have})")
    if half:
        state = {key: value.half() if torch.is_tensor(value) and value.is_floating_point() else value
                 for key, value in state.items()}
    meta = dict(checkpoint.get("meta") or {})
    # --raw without model_raw: the run had no EMA, "model" holds the trained weights already.
    kind = "trained" if raw else meta.get("model_weights", "trained")
    meta.update({"model_weights": kind, "stripped_from": str(source),
                 "dtype": "float16" if half else "as trained"})
    for key in ("iteration", "epoch", "best"):
        if key in checkpoint:
            meta.setdefault(key, checkpoint[key])
    stripped: dict[str, Any] = {"model": dict(state)}
    stripped.update({key: checkpoint[key] for key in _KEPT_BY_STRIP if key in checkpoint})
    stripped["meta"] = meta
    return stripped
