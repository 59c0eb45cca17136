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
- ``progress_bar`` [True]: tqdm bar on rank 0.
- ``hooks`` [[]]: extra :class:`detkit.engine.hooks.Hook` objects (L() nodes in a config).

Command-line overrides can only set keys that the config holds, so a config writes its ``train``
section with :func:`default_train`, which lists every key with its default::

    train = default_train(max_iter=90000, output_dir="runs/frcnn", eval_period=5000)
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from detkit.config import ConfigDict

__all__ = ["EMASettings", "TrainSettings", "default_train"]


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
    best_mode: str = "max"
    log_period: int = 20
    amp: bool | str = False
    clip_grad_norm: float | None = None
    grad_accum_steps: int = 1
    ema: EMASettings | None = None
    freeze: list[str] = field(default_factory=list)
    init_checkpoint: str | None = None
    sync_bn: bool = False
    find_unused_parameters: bool = False
    progress_bar: bool = True
    hooks: list[Any] = field(default_factory=list)

    @classmethod
    def from_config(cls, train: Mapping[str, Any], source: str = "config") -> TrainSettings:
        """Check a ``train`` dict and fill the defaults.

        Args:
            train: The ``train`` section (``hooks`` already instantiated).
            source: The config file, for error messages.

        Raises:
            ValueError: unknown key (with the nearest valid ones), missing or contradictory
                length, or a value out of range; the message names ``train.<key>`` and the file.
        """
        valid = [f.name for f in fields(cls)]
        for key in train:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"{source}: train has no key {key!r}{hint} "
                                 f"Valid keys: {', '.join(sorted(valid))}.")
        values = dict(train)
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
            values["ema"] = EMASettings(**ema)
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
        for key in ("checkpoint_period", "eval_period", "keep_last"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                fail(f"train.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("log_period", "grad_accum_steps"):
            if getattr(self, key) < 1:
                fail(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_fraction is not None and not 0 < self.eval_fraction <= 1:
            fail(f"train.eval_fraction must be in (0, 1] or None, got {self.eval_fraction}")
        if self.amp not in (False, True, "fp16", "bf16"):
            fail(f"train.amp must be False, True, 'fp16' or 'bf16', got {self.amp!r}")
        if self.best_mode not in ("max", "min"):
            fail(f"train.best_mode must be 'max' or 'min', got {self.best_mode!r}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            fail(f"train.clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}")


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
