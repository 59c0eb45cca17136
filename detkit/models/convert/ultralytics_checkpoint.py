"""Read the weights of an ultralytics checkpoint (``.pt``) without running anything from the file.

ultralytics pickles whole model objects (``DetectionModel`` with its ``Conv``, ``C2f``, ``Detect``
... modules), which ``torch.load(weights_only=True)`` refuses and ``weights_only=False`` would
rebuild by importing ultralytics and running whatever the pickle names. This reader unpickles with
a restricted :class:`pickle.Unpickler` instead:

- Calls (the pickle ``REDUCE`` / ``INST`` / ``OBJ`` opcodes) are allowed only to torch's tensor and
  parameter rebuilders, to plain containers (``collections.OrderedDict``, ``set``, ``frozenset``,
  ``torch.Size``) and to detkit's checked stand-ins for ``bytes`` (``_codecs.encode``) and numpy
  numbers (``numpy.dtype`` of a plain number type and numpy's ``scalar``, which appear in saved
  training metrics); storages are read from the zip archive by this module.
- Every other global the pickle names (ultralytics' and torch.nn's classes, or anything else) is
  replaced by an inert placeholder class made here: it is never imported, and a placeholder can
  only be created empty (``NEWOBJ``, how protocol-2 pickles make class instances, or a call with
  no arguments) and given its saved ``__dict__`` (``BUILD``, stored as data, no ``__setstate__``
  of the file's class runs). Calling one with arguments (``REDUCE`` of ``os.system``,
  ``builtins.eval``, ``subprocess.Popen`` ...) raises.
- Persistent ids must be torch's ``("storage", type, key, location, numel)``, with a storage type
  of a known dtype and a key naming a record of the archive.

The module tree is then walked as ``torch.nn.Module.state_dict`` does (each module's
``_parameters``, then its persistent ``_buffers``, then its ``_modules`` in order) to give the
state dict of the checkpoint's ``"ema"`` entry, else its ``"model"`` entry, with ultralytics'
names (``model.0.conv.weight``, ...) and the stored dtypes (float16 in checkpoints ultralytics
saves). A checkpoint whose entry is already a state dict (a mapping of names to tensors) gives it.

Anything else fails with one :class:`UltralyticsCheckpointError` naming the file.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from detkit.utils.checkpoint import CheckpointError, CheckpointNotFoundError

__all__ = ["UltralyticsCheckpointError", "read_ultralytics_checkpoint"]


class UltralyticsCheckpointError(CheckpointError):
    """An ultralytics checkpoint that cannot be read safely; the message names the file."""


class _Refused(Exception):
    """Raised inside the unpickler; turned into an UltralyticsCheckpointError naming the file."""


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, "latin1")``: how protocol-2 pickles spell ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"it calls _codecs.encode with {type(text).__name__}, {encoding!r} (only str, 'latin1')")
    return text.encode("latin1")


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> Any:
    """``numpy.dtype(spec)`` for a plain number type only (numpy scalars in training metrics)."""
    import numpy as np

    if not (isinstance(spec, str) and re.fullmatch(r"[biufc]\d{1,2}|\?", spec)):
        raise _Refused(f"it calls numpy.dtype with {spec!r} (only plain number types)")
    return np.dtype(spec)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """A numpy number from its dtype and bytes, as a Python number (``numpy...multiarray.scalar``)."""
    import numpy as np

    if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and isinstance(data, bytes)
            and len(data) == dtype.itemsize):  # fmt: skip
        raise _Refused(f"it calls numpy's scalar with {dtype!r}, {type(data).__name__} (only plain numbers)")
    return np.frombuffer(data, dtype=dtype)[0].item()


# The callables the pickle may call, by (module, name) as pickles spell them; the _codecs and
# numpy ones are detkit's checked stand-ins (bytes, and numpy numbers such as training metrics).
_CALLABLES: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}

# Storage classes by name (what torch.save writes in a storage's persistent id) and their dtype.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

# torch dtypes pickled by name (``torch.float16`` ...): values, not calls.
_DTYPES: dict[str, torch.dtype] = {
    name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)
}


class _StorageType:
    """Stands for a torch storage class named in the pickle; only its dtype is used."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype


class _PlaceholderMeta(type):
    """Placeholders cannot be called with arguments: a pickle that calls a global it is not allowed
    to call fails. A call without arguments gives an empty placeholder (``types.SimpleNamespace``
    and its subclasses pickle as such a call followed by ``BUILD``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            raise _Refused(
                f"it calls {cls.qualified_name} with arguments (only tensor rebuilders and plain containers may be "
                "called)"
            )
        return cls.__new__(cls)


class _Placeholder(metaclass=_PlaceholderMeta):
    """An inert stand-in for an object of a class the pickle names (never imported).

    Attributes:
        qualified_name: ``module.name`` of the class in the pickle.
        state: what the pickle's ``BUILD`` gave (the object's ``__dict__`` for modules).
    """

    qualified_name = "<placeholder>"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:  # noqa: PYI034
        instance = object.__new__(cls)
        instance.__dict__["state"] = None
        instance.__dict__["new_args"] = args
        return instance

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<{self.qualified_name} placeholder>"


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's zip-format ``data.pkl`` with placeholders for every class (module doc)."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.storage.TypedStorage] = {}
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CALLABLES:
            return _CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        key = (module, name)
        if key not in self._placeholders:
            self._placeholders[key] = _PlaceholderMeta(
                name, (_Placeholder,), {"qualified_name": f"{module}.{name}", "__module__": __name__}
            )
        return self._placeholders[key]

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Refused(f"it has an unknown persistent id {str(pid)[:80]!r} (torch's storages only)")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _Refused(f"storage {key!r} has an unknown type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            record = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(record)
            except KeyError:
                raise _Refused(f"storage {key!r} has no record {record!r} in the archive") from None
            itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
            if not isinstance(numel, int) or len(raw) != numel * itemsize:
                raise _Refused(f"storage {key!r} holds {len(raw)} bytes, not {numel} x {itemsize}")
            untyped = torch.frombuffer(bytearray(raw), dtype=torch.uint8).untyped_storage() if raw else (
                torch.UntypedStorage(0)
            )
            self._storages[key] = torch.storage.TypedStorage(
                wrap_storage=untyped, dtype=storage_type.dtype, _internal=True
            )
        return self._storages[key]


def _load_pickle(path: Path) -> Any:
    """The unpickled top-level object of torch's zip format, through the restricted unpickler."""
    if not zipfile.is_zipfile(path):
        raise _Refused("it is not a torch zip archive (legacy torch < 1.6 files are not read)")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise _Refused(f"it has {len(pickles)} top-level data.pkl records, expected 1")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() not in (b"little", b""):
            raise _Refused("its tensors are big-endian")
        return _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix).load()


def _module_state(module: Any) -> dict[str, Any]:
    if not isinstance(module, _Placeholder) or not isinstance(module.state, dict):
        raise _Refused(f"{module!r} is not a module object with saved attributes")
    return module.state


def _collect(module: Any, prefix: str, out: dict[str, Tensor]) -> None:
    """``state_dict`` order: own parameters, own persistent buffers, then the children."""
    state = _module_state(module)
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        entries = state.get(group) or {}
        if not isinstance(entries, Mapping):
            raise _Refused(f"{module!r} has {group} of type {type(entries).__name__}")
        for name, value in entries.items():
            if value is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(value, Tensor):
                raise _Refused(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            out[f"{prefix}{name}"] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items()
    )


def read_ultralytics_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict of an ultralytics checkpoint, read without running code from the file.

    Args:
        path: A ``.pt`` written by ultralytics (``last.pt`` / ``best.pt`` of a run, a released
            ``yolov8n.pt``), or a torch zip file holding such a dict or a plain state dict.

    Returns:
        ``{name: tensor}`` of the ``"ema"`` entry (else ``"model"``) in ``state_dict`` order and
        names (``"model.0.conv.weight"``, ...), in the stored dtypes, on the CPU.

    Raises:
        CheckpointNotFoundError: the file does not exist.
        UltralyticsCheckpointError: anything else (a call the reader does not allow, an unknown
            persistent id, no module entry), one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no such ultralytics checkpoint file")
    try:
        checkpoint = _load_pickle(path)
        if _is_state_dict(checkpoint):
            return dict(checkpoint)
        if not isinstance(checkpoint, Mapping):
            raise _Refused(f"it holds a {type(checkpoint).__name__}, not a checkpoint dict")
        entry = checkpoint.get("ema") or checkpoint.get("model")
        if entry is None:
            raise _Refused(f"it has no 'ema' or 'model' entry (keys: {sorted(map(str, checkpoint))[:10]})")
        if _is_state_dict(entry):
            return dict(entry)
        weights: dict[str, Tensor] = {}
        _collect(entry, "", weights)
        if not weights:
            raise _Refused(f"its model {entry!r} holds no tensors")
        return weights
    except _Refused as error:
        raise UltralyticsCheckpointError(f"{path}: refused as an ultralytics checkpoint: {error}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, RuntimeError, AttributeError,
            KeyError, IndexError) as error:
        raise UltralyticsCheckpointError(
            f"{path}: cannot be read as an ultralytics checkpoint ({type(error).__name__}: {error})"
        ) from None
