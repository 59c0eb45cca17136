"""The output folder of a training run, checked before any work starts.

A fresh run (no resume) into a folder that already holds another run's checkpoints or
``metrics.jsonl`` would silently overwrite them, and a later ``--resume auto`` could pick up the
old run's newest checkpoint; :func:`prepare_output_dir` stops it with a one-line
:class:`OutputDirError` that says how to continue (``--resume auto``) or start over (a new
``--output-dir``, or ``--overwrite`` / ``train.overwrite=True``, which deletes the old run's files
first). A folder that cannot be created or written fails here too, before the model is built.

:func:`check_output_dir` is that last check alone (a file in the way, a folder that cannot be
created, no write permission), for every command that writes into a folder (``detkit infer``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from detkit.engine.checkpoint import LAST_CHECKPOINT_FILE, Checkpointer

logger = logging.getLogger(__name__)

__all__ = ["OutputDirError", "check_output_dir", "existing_run_files", "prepare_output_dir"]

METRICS_FILE = "metrics.jsonl"


class OutputDirError(ValueError):
    """The output folder holds another run, or cannot be created or written."""


def existing_run_files(output_dir: str | Path) -> list[Path]:
    """The files of an earlier run in ``output_dir``: checkpoints, ``last_checkpoint`` and
    ``metrics.jsonl`` (``config.py`` and ``log.txt`` alone do not make a run)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    checkpointer = Checkpointer(out)
    named = [checkpointer.final_path, checkpointer.best_path, out / LAST_CHECKPOINT_FILE,
             out / METRICS_FILE]
    return [path for _, path in checkpointer.periodic_checkpoints()] + [p for p in named if p.is_file()]


def _blocking_file(out: Path) -> Path | None:
    """The first existing component of ``out`` (itself included) that is not a folder."""
    for part in [*reversed(out.parents), out]:
        if part.exists() and not part.is_dir():
            return part
    return None


def check_output_dir(output_dir: str | Path, option: str = "--output-dir (train.output_dir)",
                     create: bool = True) -> Path:
    """Check that ``output_dir`` is, or can be made, a folder that files can be written in.

    Nothing is left behind when ``create`` is False: the folders made for the check (and the
    probe file) are removed again, so a command that stops later leaves no empty folder.

    Args:
        output_dir: The folder.
        option: How the user names it, for the message (``--out``).
        create: Leave the folder created.

    Returns:
        The folder (created when ``create``).

    Raises:
        OutputDirError: ``output_dir`` or a folder above it is a file, or the folder cannot be
            created or written (one line, naming the folder and the reason).
    """
    out = Path(output_dir)
    blocking = _blocking_file(out)
    if blocking == out:
        raise OutputDirError(f"output folder {out} is a file, not a folder; choose another {option}")
    if blocking is not None:
        raise OutputDirError(f"output folder {out} cannot be used: {blocking} is a file, not a "
                             f"folder; choose another {option}")
    made = [] if out.is_dir() else [p for p in [*reversed(out.parents), out] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".detkit_write_test_"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputDirError(f"output folder {out} cannot be used: {reason}; choose another "
                             f"{option}") from None
    finally:
        if not create:
            for folder in reversed(made):
                try:
                    folder.rmdir()
                except OSError:
                    break
    return out


def prepare_output_dir(output_dir: str | Path, resume: str | None = None,
                       overwrite: bool = False) -> Path:
    """Check (and create) the output folder of a run before any work.

    Args:
        output_dir: The run's folder.
        resume: The run's ``resume`` argument (``None``: a fresh run).
        overwrite: Delete another run's files instead of stopping (rank 0 deletes).

    Returns:
        The folder, created and writable.

    Raises:
        OutputDirError: a fresh run without ``overwrite`` into a folder holding a run, or a
            folder that is a file, cannot be created or is not writable (one line, naming it).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output folder {out} is a file, not a folder; choose another "
                             "--output-dir (train.output_dir)")
    found = existing_run_files(out) if resume is None else []
    if found and not overwrite:
        names = ", ".join(path.name for path in found[:4]) + (", ..." if len(found) > 4 else "")
        raise OutputDirError(
            f"output folder {out} already holds a run ({names}); continue it with --resume auto, "
            "or start over with a new --output-dir or --overwrite (train.overwrite=True)")
    check_output_dir(out)
    if found and int(os.environ.get("RANK", "0")) == 0:
        logger.warning("--overwrite: deleting the earlier run's %d file(s) in %s", len(found), out)
        for path in found:
            path.unlink(missing_ok=True)
    return out
