"""The ``train`` section of a config, checked and typed.

Keys (defaults in brackets); exactly one of ``max_iter`` / ``max_epochs`` is required:

- ``max_iter`` / ``max_epochs``: length of training, in optimiser steps or epochs.
- ``output_dir`` ["runs/default"]: where checkpoints, ``metrics.jsonl``, ``log.txt`` and the
  resolved ``config.py`` go (``--output-dir`` overrides it).
- ``overwrite`` [False]: a fresh run (no resume) into a folder that holds another run's
  checkpoints or metrics deletes them first; without it the run stops before any work
  (``detkit train --overwrite`` sets it).
- ``seed`` [0]: seeds the generators, the data order and the augmentation.
- ``device`` ["auto"]: ``"auto"``, ``"cpu"``, ``"cuda"`` (the LOCAL_RANK GPU) or ``"cuda:K"``.
- ``checkpoint_period`` [1000]: iterations between checkpoints (0: only the final one).
- ``keep_last`` [3]: periodic checkpoints kept (0: all).
- ``eval_period`` [None]: iterations between evaluations (0 or None: only at the end); needs an
  evaluator. Wins over ``eval_fraction``.
- ``eval_fraction`` [None]: evaluate every this fraction of the run, in (0, 1] (0.5: half-way and
  at the end), when ``eval_period`` is not set; follows a ``max_iter`` override.
- ``best_metric`` [None], ``best_mode`` ["max"]: metric that selects ``model_best.pth``.
- ``patience`` [None]: early stopping: stop after this many evaluations in a row without an
  improvement of ``best_metric`` (in ``best_mode``); needs ``best_metric`` and an evaluator.
  The run ends as a normal end does (final checkpoint, a ``"stop"`` record in ``metrics.jsonl``).
- ``log_period`` [20]: iterations between lines of ``metrics.jsonl`` and log lines.
- ``amp`` [False]: False, True / "fp16" (CUDA autocast + GradScaler; disabled on the CPU with a
  log line) or "bf16" (autocast to bfloat16 on CUDA or CPU, no scaler).
- ``clip_grad_norm`` [None]: max total gradient norm.
- ``grad_accum_steps`` [1]: micro-batches per optimiser step.
- ``ema`` [None]: dict(decay=0.9999, tau=2000, use_for_eval=True) to keep a moving average; with
  ``use_for_eval`` the average is what training-time evaluation scores, what selects
  ``model_best.pth`` and what every checkpoint holds under ``model`` (the trained weights under
  ``model_raw``), so ``detkit test`` / ``infer`` / ``detkit.load`` score the same weights.
- ``freeze`` [[]]: parameter-name prefixes to freeze (their norm layers kept in eval mode).
- ``init_checkpoint`` [None]: weights to start from (matching keys and shapes; rest reported).
- ``sync_bn`` [False]: convert BatchNorm to SyncBatchNorm under torch.distributed.
- ``find_unused_parameters`` [False]: DistributedDataParallel option.
- ``progress_bar`` [True]: tqdm bar on rank 0 (log lines are printed above it).
- ``tensorboard`` [False]: also write the scalars of ``metrics.jsonl`` (losses, lr, times,
  evaluation metrics) as TensorBoard event files in ``output_dir/tensorboard`` (needs
  ``pip install tensorboard``).
- ``hooks`` [[]]: extra :class:`detkit.engine.hooks.Hook` objects (L() nodes in a config).

Every value is checked against the type of its :class:`TrainSettings` field when the config
loads (``train.checkpoint_period='5'`` is refused: a str where an int is expected), before a
model or a dataset is built.

Command-line overrides can only set keys that the config holds, so a config writes its ``train``
section with :func:`default_train`, which lists every key with its default::

    train = default_train(max_iter=90000, output_dir="runs/frcnn", eval_period=5000)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from detkit.config import ConfigDict
from detkit.config.override_types import register_section_types

__all__ = ["EMASettings", "TrainSettings", "check_field_types", "default_train"]


@dataclass
class EMASettings:
    """Moving-average settings (see :class:`detkit.engine.ema.ModelEMA`)."""

    decay: float = 0.9999
    tau: float = 2000.0
    use_for_eval: bool = True


@dataclass
class TrainSettings:
    """The checked ``train`` section; see the module docstring for each key."""

    max_iter: int | None = None
    max_epochs: int | None = None
    output_dir: str = "runs/default"
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    checkpoint_period: int = 1000
    keep_last: int = 3
    eval_period: int | None = None
    eval_fraction: float | None = None
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    patience: int | None = None
    log_period: int = 20
    amp: bool | Literal["fp16", "bf16"] = False
    clip_grad_norm: float | None = None
    grad_accum_steps: int = 1
    ema: EMASettings | None = None
    freeze: list[str] = field(default_factory=list)
    init_checkpoint: str | None = None
    sync_bn: bool = False
    find_unused_parameters: bool = False
    progress_bar: bool = True
    tensorboard: bool = False
    hooks: list[Any] = field(default_factory=list)

    @classmethod
    def from_config(cls, train: Mapping[str, Any], source: str = "config") -> TrainSettings:
        """Check a ``train`` dict and fill the defaults.

        Args:
            train: The ``train`` section (``hooks`` already instantiated).
            source: The config file, for error messages.

        Raises:
            ValueError: unknown key (with the nearest valid ones), a value of the wrong type
                (naming the expected type), missing or contradictory length, or a value out of
                range; the message names ``train.<key>`` and the file.
        """
        valid = [f.name for f in fields(cls)]
        for key in train:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"{source}: train has no key {key!r}{hint} "
                                 f"Valid keys: {', '.join(sorted(valid))}.")
        values = dict(train)
        for key in ("output_dir", "init_checkpoint"):  # a Path is as good as a str here
            if isinstance(values.get(key), os.PathLike):
                values[key] = os.fspath(values[key])
        for key in ("freeze", "hooks"):  # None: none
            if key in values and values[key] is None:
                values[key] = []
        ema = values.get("ema")
        if ema is True:
            values["ema"] = EMASettings()
        elif ema is False or ema is None:
            values["ema"] = None
        elif isinstance(ema, Mapping):
            unknown = set(ema) - {f.name for f in fields(EMASettings)}
            if unknown:
                raise ValueError(f"{source}: train.ema has unknown keys {sorted(unknown)}; "
                                 "valid: decay, tau, use_for_eval")
            check_field_types(EMASettings, ema, "train.ema", source)
            values["ema"] = EMASettings(**ema)
        elif not isinstance(ema, EMASettings):
            raise ValueError(f"{source}: train.ema must be None, True, False or a dict of "
                             f"decay, tau, use_for_eval; got {ema!r} ({type(ema).__name__})")
        check_field_types(cls, values, "train", source)
        values["freeze"] = list(values.get("freeze") or [])
        values["hooks"] = list(values.get("hooks") or [])
        settings = cls(**values)
        settings._check(source)
        return settings

    def resolved_eval_period(self, max_iter: int) -> int:
        """Iterations between evaluations in a run of ``max_iter`` steps (0: only at the end):
        ``eval_period`` when set, else ``eval_fraction`` of the run."""
        if self.eval_period is not None:
            return self.eval_period
        if self.eval_fraction is not None:
            return max(round(self.eval_fraction * max_iter), 1)
        return 0

    def _check(self, source: str) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"{source}: {message}")

        if (self.max_iter is None) == (self.max_epochs is None):
            fail("set exactly one of train.max_iter and train.max_epochs "
                 f"(got max_iter={self.max_iter}, max_epochs={self.max_epochs})")
        for key in ("max_iter", "max_epochs"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                fail(f"train.{key} must be a positive integer, got {value!r}")
        if self.patience is not None:
            if self.patience < 1:
                fail(f"train.patience must be >= 1 or None, got {self.patience}")
            if not self.best_metric:
                fail(f"train.patience={self.patience} needs train.best_metric (the evaluation "
                     "metric whose improvement it waits for) and an evaluator")
        for key in ("checkpoint_period", "eval_period", "keep_last"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                fail(f"train.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("log_period", "grad_accum_steps"):
            if getattr(self, key) < 1:
                fail(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_fraction is not None and not 0 < self.eval_fraction <= 1:
            fail(f"train.eval_fraction must be in (0, 1] or None, got {self.eval_fraction}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            fail(f"train.clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}")


def _type_name(hint: Any) -> str:
    """``int``, ``int or None``, ``list[str]``, ``'max' or 'min'``: a type hint for people."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    if origin is list:
        args = [arg for arg in typing.get_args(hint) if arg is not Any]
        return f"list[{', '.join(map(_type_name, args))}]" if args else "list"
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any value"
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` has type ``hint`` (the hints of the settings dataclasses: None, bool,
    int, float, str, Any, Literal, unions, list[X] and dataclasses). A bool is not an int, an
    int is a float, a tuple is as good as a list."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_field_types(cls: type, values: Mapping[str, Any], prefix: str, source: str) -> None:
    """Check ``values`` against the field types of dataclass ``cls``.

    Args:
        cls: A dataclass whose fields are annotated (e.g. :class:`TrainSettings`).
        values: Field name to value; names that are not fields are skipped.
        prefix: Config path of the section, for the message (``"train"``).
        source: The config file, for the message.

    Raises:
        ValueError: ``<source>: train.<key> must be <type>, got <value> (<its type>)``.
    """
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key in hints and not _matches(value, hints[key]):
            raise ValueError(f"{source}: {prefix}.{key} must be {_type_name(hints[key])}, got "
                             f"{value!r} ({type(value).__name__})")


# Overrides of train.KEY are checked against these field types too (train.amp='bf16' replaces False).
register_section_types("train", typing.get_type_hints(TrainSettings))


def default_train(**values: Any) -> ConfigDict:
    """A ``train`` section holding every key, at its default unless given.

    Args:
        values: Keys to set (checked: an unknown key raises ValueError with suggestions).

    Returns:
        A :class:`ConfigDict` with every key of :class:`TrainSettings`.
    """
    length = {} if "max_iter" in values or "max_epochs" in values else {"max_iter": 1}
    TrainSettings.from_config({**length, **values}, source="default_train()")
    defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING
                else f.default_factory() for f in fields(TrainSettings)}
    return ConfigDict({**defaults, **values})
