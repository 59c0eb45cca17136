"""Checkpoint files: the one place detkit reads, writes and loads them.

* Reading: :func:`read_checkpoint` (the whole dict) and :func:`read_state_dict` (the model's
  ``{key: tensor}``) use ``torch.load(path, map_location="cpu", weights_only=True)`` only: a file
  can hold tensors and plain containers, never code.
* Writing: :func:`save_checkpoint` and :func:`atomic_write_bytes` write a temporary file in the
  target's folder, flush and fsync it, rename it over the target with ``os.replace`` and fsync the
  folder, so a crash leaves the old file or the new one, never a torn one, and no temporary file.
* Loading into a module: :func:`load_weights` matches keys (optionally rewritten by a prefix map,
  e.g. ``{"backbone.body.": ""}``, and without a DistributedDataParallel ``module.`` prefix with
  ``drop_ddp_prefix=True``), skips tensors of the wrong shape and returns a :class:`LoadReport`;
  ``strict=True`` raises instead and leaves the module unchanged. A whole detector from a detkit
  checkpoint is ``load_weights(model, path, strict=True, drop_ddp_prefix=True)``.

Every problem with a file is a :class:`CheckpointError` whose one-line message names the path: a
missing file (:class:`CheckpointNotFoundError`, also a ``FileNotFoundError``), an empty,
truncated or corrupt file, a file that is not a torch checkpoint, a pickle that would run code
(refused by ``weights_only``), a checkpoint without a state dict, and a state dict that does not
fit the module (strict loading; a few keys of each kind are named).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "LoadReport",
    "apply_prefix_map",
    "atomic_write_bytes",
    "load_weights",
    "read_checkpoint",
    "read_state_dict",
    "save_checkpoint",
    "state_dict_of",
    "temp_file_target",
]

# Keys under which a checkpoint nests the model's state dict, in the order they are tried:
# detkit's own ``model`` first, then what other training scripts use.
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict")
_DDP_PREFIX = "module."  # what DistributedDataParallel adds to every key
_KEYS_SHOWN = 8  # keys named per kind of mismatch before "... and N more"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format starts like every zip file
# The temporary file of an atomic write of ``name``: ``.{name}.{8 random chars}.tmp`` (mkstemp's).
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose state dict does not fit; the message is
    one line and names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (a :class:`CheckpointError` and a ``FileNotFoundError``)."""


# --------------------------------------------------------------------------------------------
# reading


def _first_line(error: BaseException) -> str:
    """The first sentence of the first non-empty line of ``error``'s message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    line = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", lines[0])  # c10's source location
    return line.split(". ")[0].rstrip(".")


def _foreign_format(path: Path, head: bytes) -> str | None:
    """What a file that is not a torch checkpoint looks like it is, from its first bytes
    (``None`` when it could be one)."""
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array file, not a torch checkpoint"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras / h5py?), not a torch checkpoint"
    if head.startswith(b"\x08\x01\x12") or path.suffix.lower() == ".onnx":
        return "looks like an ONNX / protobuf file, not a torch checkpoint"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return "an image, not a torch checkpoint"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the weights were never downloaded), not a torch checkpoint"
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None  # a torn zip: truncated (said by _explain_load_error)
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            return f"a zip archive that is not a torch checkpoint (it holds {shown or 'nothing'})"
        return None
    if head and head[:1] != b"\x80" and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "a text file, not a torch checkpoint"
    return None


def _explain_load_error(path: Path, error: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in a few words."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as os_error:  # no permission, a file that vanished...
        return os_error.strerror or type(os_error).__name__
    text = str(error)
    if not head:
        return "the file is empty (0 bytes)"
    foreign = _foreign_format(path, head)
    if foreign:
        return foreign
    if "Weights only load failed" in text:
        refused = re.search(r"GLOBAL ([\w.]+)", text)
        if refused and not refused.group(1).startswith("torch."):
            return (f"it holds a pickled Python object ({refused.group(1)}), refused: unpickling "
                    "it could run code, and detkit reads checkpoints with weights_only=True only")
        if refused:  # a torch name cut short: the end of a legacy-format file is missing
            return "truncated or corrupt torch file"
        return "not a torch checkpoint (a foreign pickle or not a pickle at all)"
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):  # the zip's directory at the end of the file is missing
            return "truncated or corrupt torch file (its zip archive is incomplete)"
        return f"corrupt torch file ({_first_line(error)})"
    if isinstance(error, EOFError):
        return "truncated file (it ends too early)"
    return f"not a torch checkpoint ({type(error).__name__}: {_first_line(error)})"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file on the CPU with ``weights_only=True``.

    Args:
        path: A file written by ``torch.save`` (a training checkpoint, a converted checkpoint or a
            bare state dict).

    Returns:
        The checkpoint's top-level dict.

    Raises:
        CheckpointNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a file, empty, truncated, corrupt, not a torch file, holds
            pickled code, or does not hold a dict; the message names ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - every unpickling problem becomes one clear line
            # torch's own warnings about a file it then refuses (pickle protocol...) are dropped:
            # the one line below says what is wrong with it.
            raise CheckpointError(f"cannot read checkpoint {path}: {_explain_load_error(path, error)}") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"cannot read checkpoint {path}: it holds a {type(checkpoint).__name__}, "
                              "not a dict")
    return checkpoint


def state_dict_of(checkpoint: Mapping[str, Any], path: str | Path) -> dict[str, Tensor]:
    """The model's state dict in a checkpoint: a bare ``{key: tensor}`` dict, or the mapping under
    the first of ``"model"``, ``"state_dict"``, ``"model_state_dict"``.

    Args:
        checkpoint: What :func:`read_checkpoint` returned.
        path: The file it came from (for messages).

    Raises:
        CheckpointError: no state dict in the checkpoint (the message lists its keys), or entries
            of the state dict that are not tensors.
    """
    if checkpoint and all(isinstance(value, Tensor) for value in checkpoint.values()):
        state = checkpoint
    else:
        nested = next((key for key in STATE_DICT_KEYS if isinstance(checkpoint.get(key), Mapping)), None)
        if nested is None:
            have = ", ".join(map(str, checkpoint)) or "nothing"
            raise CheckpointError(f"{path}: no 'model' state dict in the checkpoint (it has: {have})")
        state = checkpoint[nested]
    not_tensors = [str(key) for key, value in state.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {_name_some(not_tensors)}")
    return dict(state)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """:func:`read_checkpoint` then :func:`state_dict_of`: the model's ``{key: tensor}`` in a file."""
    return state_dict_of(read_checkpoint(path), path)


# --------------------------------------------------------------------------------------------
# writing


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_file_target(name: str) -> str | None:
    """The file an atomic write was writing when it left the temporary file ``name`` behind
    (a process killed between writing and renaming), or ``None`` when ``name`` is not one.

    >>> temp_file_target(".model_0000010.pth.k3x_9a0q.tmp")
    'model_0000010.pth'
    """
    match = _TEMP_NAME.match(name)
    return match.group("target") if match else None


def _atomic_write(path: str | Path, write: Any) -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it over ``path``.

    The temporary file is flushed and fsynced before ``os.replace`` and removed when anything
    fails (the exception is re-raised; ``path`` keeps its old content).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, flush, fsync, rename, fsync the folder).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return _atomic_write(path, lambda handle: handle.write(data))


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` a checkpoint to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        checkpoint: Tensors and plain Python values only (what ``weights_only=True`` reads back),
            e.g. ``{"model": state_dict, "config": ..., "meta": {...}}``.
        path: Target file; its folder is created when missing.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """

    def write(handle: BinaryIO) -> None:
        torch.save(checkpoint, handle)

    return _atomic_write(path, write)


# --------------------------------------------------------------------------------------------
# loading into a module


def _name_some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_KEYS_SHOWN])
    return shown + (f", ... and {len(names) - _KEYS_SHOWN} more" if len(names) > _KEYS_SHOWN else "")


def _summarise(keys: list[str], limit: int = 12) -> str:
    """Keys in full when few, else grouped by their first two name components."""
    if len(keys) <= limit:
        return ", ".join(keys)
    groups = Counter(".".join(key.split(".")[:2]) for key in keys)
    return ", ".join(f"{group}.* ({count})" for group, count in groups.items())


@dataclass
class LoadReport:
    """What happened when a state dict was loaded into a module.

    Attributes:
        path: The checkpoint file (or a description of an in-memory state dict).
        loaded_keys: Module keys that received a value.
        missing_keys: Module keys the checkpoint had no value for (left as initialised).
        unexpected_keys: Checkpoint keys (after the prefix map) the module has no place for.
        shape_mismatches: ``(key, checkpoint_shape, module_shape)`` for keys skipped because the
            shapes differ.
    """

    path: Path
    loaded_keys: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every module key was loaded and every checkpoint key was used."""
        return not (self.missing_keys or self.unexpected_keys or self.shape_mismatches)

    def problems(self) -> list[str]:
        """One short phrase per kind of mismatch, naming a few keys of each
        (``"1 missing key: stem.bias"``)."""
        mismatched = [f"{key} (checkpoint {list(have)}, model {list(want)})"
                      for key, have, want in self.shape_mismatches]
        return [f"{len(keys)} {kind} key{'s' if len(keys) > 1 else ''}: {_name_some(keys)}"
                for kind, keys in (("missing", self.missing_keys), ("unexpected", self.unexpected_keys),
                                   ("shape-mismatched", mismatched)) if keys]

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded_keys)} tensors from {self.path}"]
        if self.missing_keys:
            lines.append(f"missing in checkpoint ({len(self.missing_keys)}): {_summarise(self.missing_keys)}")
        if self.unexpected_keys:
            lines.append(f"unexpected in checkpoint, ignored ({len(self.unexpected_keys)}): "
                         f"{_summarise(self.unexpected_keys)}")
        for key, checkpoint_shape, module_shape in self.shape_mismatches:
            lines.append(f"shape mismatch, skipped: {key}: checkpoint {list(checkpoint_shape)} "
                         f"vs module {list(module_shape)}")
        return "\n  ".join(lines)


def apply_prefix_map(state_dict: Mapping[str, Tensor], prefix_map: Mapping[str, str]) -> dict[str, Tensor]:
    """Rewrite key prefixes.

    Args:
        state_dict: ``{key: tensor}``.
        prefix_map: ``{checkpoint_prefix: module_prefix}``; the longest matching prefix wins; keys
            that match none are kept unchanged.

    Returns:
        A new dict with the rewritten keys.
    """
    prefixes = sorted(prefix_map, key=len, reverse=True)
    renamed: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = prefix_map[prefix] + key[len(prefix):]
                break
        renamed[key] = value
    return renamed


def _drop_ddp_prefix(state: dict[str, Tensor], module_keys: Sequence[str]) -> dict[str, Tensor]:
    """Keys saved from a DistributedDataParallel wrapper (all ``module.``-prefixed) without the
    prefix, unless the module's own keys carry it too."""
    if state and all(k.startswith(_DDP_PREFIX) for k in state) and not (
            module_keys and all(k.startswith(_DDP_PREFIX) for k in module_keys)):
        return {k[len(_DDP_PREFIX):]: v for k, v in state.items()}
    return state


def load_weights(
    module: nn.Module,
    source: str | Path | Mapping[str, Tensor],
    *,
    prefix_map: Mapping[str, str] | None = None,
    strict: bool = False,
    drop_ddp_prefix: bool = False,
    name: str | Path | None = None,
) -> LoadReport:
    """Load a checkpoint (or a state dict) into ``module`` and report what did not fit.

    Tensors whose shape differs from the module's are skipped and reported, so a checkpoint with
    another number of classes still loads its other tensors. Missing and unexpected keys are what
    ``module.load_state_dict`` reports (so a module's own load hooks, such as frozen batch norm
    dropping ``num_batches_tracked``, are respected). The report is logged at INFO level when
    everything fit, else at WARNING level.

    Args:
        module: The module to fill.
        source: A checkpoint file (read with :func:`read_state_dict`: a bare state dict or one
            nested under ``"model"``, ``"state_dict"`` or ``"model_state_dict"``), or an in-memory
            ``{key: tensor}`` state dict.
        prefix_map: Optional ``{checkpoint_prefix: module_prefix}`` key rewriting
            (:func:`apply_prefix_map`), applied after ``drop_ddp_prefix``.
        strict: Raise when any key is missing, unexpected or of the wrong shape; the module is
            then left unchanged.
        drop_ddp_prefix: When every checkpoint key starts with ``module.`` (saved from a
            DistributedDataParallel wrapper) and the module's keys do not, drop that prefix. Off
            by default: a raw load reports such keys as unexpected.
        name: The file an in-memory ``source`` came from, named in messages and the report
            (default ``<state dict>``; a file ``source`` is named by its path).

    Returns:
        The :class:`LoadReport`.

    Raises:
        CheckpointNotFoundError: the file does not exist.
        CheckpointError: the file cannot be read or holds no state dict; with ``strict=True``, the
            state dict does not fit (a few missing, unexpected and shape-mismatched keys named).
    """
    if isinstance(source, Mapping):
        path = Path(name if name is not None else "<state dict>")
        state = state_dict_of(source, path)
    else:
        path = Path(source)
        state = read_state_dict(path)
    module_state = module.state_dict()
    if drop_ddp_prefix:
        state = _drop_ddp_prefix(state, list(module_state))
    if prefix_map:
        state = apply_prefix_map(state, prefix_map)

    mismatches = [(key, tuple(value.shape), tuple(module_state[key].shape))
                  for key, value in state.items()
                  if key in module_state and value.shape != module_state[key].shape]
    mismatched = {key for key, _, _ in mismatches}
    loadable = {key: value for key, value in state.items() if key not in mismatched}
    exact = not mismatched and loadable.keys() == module_state.keys()
    # A strict load that may not fit keeps what it overwrites, to put it back on failure.
    backup = ({key: module_state[key].detach().clone() for key in loadable if key in module_state}
              if strict and not exact else None)
    result = module.load_state_dict(loadable, strict=False)
    missing = [key for key in result.missing_keys if key not in mismatched]
    not_loaded = set(missing) | mismatched
    position = {key: index for index, key in enumerate(loadable)}  # unexpected keys in file order
    unexpected = sorted(result.unexpected_keys, key=lambda key: position.get(key, len(position)))
    report = LoadReport(path=path, loaded_keys=[key for key in module_state if key not in not_loaded],
                        missing_keys=missing, unexpected_keys=unexpected,
                        shape_mismatches=mismatches)
    if strict and not report.ok:
        if backup is not None:
            module.load_state_dict(backup, strict=False)
        raise CheckpointError(f"checkpoint {path} does not fit the model ({type(module).__name__}): "
                              + "; ".join(report.problems()))
    logger.log(logging.INFO if report.ok else logging.WARNING, "%s: %s", type(module).__name__, report)
    return report
