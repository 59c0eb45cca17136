"""From a loaded config to a running :class:`~detkit.engine.trainer.Trainer`.

The config layout is documented in :mod:`detkit.engine.trainer`; the ``train`` keys in
:mod:`detkit.engine.settings`. :func:`run_training` is what ``tools/train.py`` calls; the steps
are separate functions so that a script or a test can replace one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from detkit.config import (
    ConfigDict, InstantiationError, LazyCall, format_config, instantiate, save_config,
)
from detkit.engine.checkpoint import Checkpointer
from detkit.engine.model_setup import freeze_by_prefix, load_init_checkpoint
from detkit.engine.rng import seed_everything
from detkit.engine.schedules import LRSchedule
from detkit.engine.settings import TrainSettings
from detkit.engine.trainer import EvaluateFn, Trainer
from detkit.utils.distributed import (
    DistInfo, barrier, convert_sync_batchnorm, get_rank, init_distributed, is_main_process,
)

logger = logging.getLogger(__name__)

__all__ = ["build_trainer", "instantiate_with", "resolve_resume", "run_training",
           "setup_logging"]

REQUIRED_SECTIONS = ("model", "dataloader", "optimizer", "lr_schedule", "train")


def instantiate_with(node: Any, key: str, **supplied: Any) -> Any:
    """Instantiate a :class:`LazyCall` node with keyword arguments the engine supplies
    (``model`` for ``optimizer``, ``seed`` for ``dataloader.train``).

    Args:
        node: The config node.
        key: Its key path, for error messages.
        supplied: Arguments added to the call (arguments the node sets itself take precedence).
    """
    if not isinstance(node, LazyCall):
        raise TypeError(f"config key {key!r} must be an L(...) node, got {type(node).__name__}")
    kwargs = {k: instantiate(v, f"{key}.{k}") for k, v in node.items() if k != "_target_"}
    for name, value in supplied.items():
        kwargs.setdefault(name, value)
    target = node["_target_"]
    try:
        return target(**kwargs)
    except InstantiationError:
        raise
    except Exception as exc:
        raise InstantiationError(f"while building {key} ({getattr(target, '__qualname__', target)}"
                                 f"): {type(exc).__name__}: {exc}") from exc


def setup_logging(output_dir: Path | None, level: int = logging.INFO) -> None:
    """Log to stderr on every rank (rank 0 at ``level``, others at WARNING) and, on rank 0, to
    ``output_dir/log.txt``."""
    root = logging.getLogger()
    root.setLevel(level if is_main_process() else logging.WARNING)
    fmt = logging.Formatter(f"[%(asctime)s r{get_rank()} %(name)s %(levelname)s] %(message)s",
                            "%H:%M:%S")
    for handler in list(root.handlers):
        if getattr(handler, "_detkit", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if output_dir is not None and is_main_process():
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._detkit = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def _check_sections(cfg: Mapping[str, Any]) -> str:
    source = getattr(cfg, "__dict__", {}).get("_cfg_file", "<in memory config>")
    missing = [name for name in REQUIRED_SECTIONS if name not in cfg]
    if missing:
        raise ValueError(f"{source}: missing top-level config key(s) {', '.join(missing)}; a "
                         f"training config defines {', '.join(REQUIRED_SECTIONS)} "
                         "(see detkit/engine/trainer.py)")
    if "train" not in cfg.get("dataloader", {}):
        raise ValueError(f"{source}: missing dataloader.train (an L(build_train_loader)(...) node)")
    return source


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    """``None``, ``"auto"`` (the newest checkpoint of ``output_dir``, or None to start fresh)
    or a checkpoint path (which must exist)."""
    if resume is None:
        return None
    if resume == "auto":
        latest = Checkpointer(output_dir).latest()
        logger.info("--resume auto: %s", latest or f"no checkpoint in {output_dir}, starting fresh")
        return latest
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint file")
    return path


def _build_evaluator(cfg: Mapping[str, Any]) -> EvaluateFn | None:
    """``evaluator.evaluate(model, dataloader.test)`` when the config has both."""
    if "evaluator" not in cfg or cfg["evaluator"] is None:
        return None
    if "test" not in cfg["dataloader"]:
        raise ValueError("config has an evaluator but no dataloader.test")
    evaluator = instantiate(cfg["evaluator"], "evaluator")
    test_loader: DataLoader = instantiate(cfg["dataloader"]["test"], "dataloader.test")

    def evaluate(model: nn.Module) -> Mapping[str, float]:
        return evaluator.evaluate(model, test_loader)

    return evaluate


def build_trainer(cfg: ConfigDict, output_dir: str | Path | None = None,
                  dist_info: DistInfo | None = None) -> Trainer:
    """Build model, data, optimiser, schedule and trainer from a loaded config.

    Args:
        cfg: A config from :func:`detkit.config.load_config` (overrides applied).
        output_dir: Overrides ``train.output_dir``.
        dist_info: Process placement; :func:`init_distributed` is called when omitted.

    Raises:
        ValueError: a missing section or a bad ``train`` key, naming the key and config file.
    """
    source = _check_sections(cfg)
    train_cfg = dict(cfg["train"])
    if output_dir is not None:
        train_cfg["output_dir"] = str(output_dir)
    train_cfg["hooks"] = instantiate(list(train_cfg.get("hooks") or []), "train.hooks")
    settings = TrainSettings.from_config(train_cfg, source)
    dist_info = dist_info or init_distributed(settings.device)
    out = Path(settings.output_dir)

    # Seeds differ per rank so that model-side randomness is not mirrored across ranks; the
    # data order and augmentation depend on settings.seed only (detkit.engine.data).
    seed_everything(settings.seed + dist_info.rank)
    model: nn.Module = instantiate(cfg["model"], "model")
    freeze_by_prefix(model, settings.freeze)
    if settings.init_checkpoint:
        load_init_checkpoint(model, settings.init_checkpoint)
    if settings.sync_bn:
        model = convert_sync_batchnorm(model, dist_info.device)
    model.to(dist_info.device)
    optimizer = instantiate_with(cfg["optimizer"], "optimizer", model=model)
    lr_schedule = instantiate(cfg["lr_schedule"], "lr_schedule")
    if not isinstance(lr_schedule, LRSchedule):
        raise TypeError(f"config key 'lr_schedule' in {source} must build an LRSchedule "
                        f"(e.g. L(MultiStepLR)(...)), got {type(lr_schedule).__name__} {lr_schedule!r}")
    data_loader = instantiate_with(cfg["dataloader"]["train"], "dataloader.train",
                                   seed=settings.seed)
    evaluate = _build_evaluator(cfg)
    config_text = ""
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.py")
        config_text = (out / "config.py").read_text()
        logger.info("config %s (resolved copy in %s):\n%s", source, out / "config.py",
                    format_config(cfg))
    return Trainer(model, optimizer, lr_schedule, data_loader, settings,
                   device=dist_info.device, evaluate=evaluate, config_text=config_text)


def run_training(cfg: ConfigDict, output_dir: str | Path | None = None,
                 resume: str | None = None) -> Trainer:
    """Set up processes and logging, build the trainer, train; returns the finished trainer.

    Args:
        cfg: The loaded config.
        output_dir: Overrides ``train.output_dir``.
        resume: ``None``, ``"auto"`` or a checkpoint path.
    """
    train_cfg = cfg.get("train") or {}
    out = Path(output_dir or train_cfg.get("output_dir", "runs/default"))
    dist_info = init_distributed(str(train_cfg.get("device", "auto")))
    setup_logging(out)
    logger.info("torch %s, device %s, rank %d of %d", torch.__version__, dist_info.device,
                dist_info.rank, dist_info.world_size)
    trainer = build_trainer(cfg, out, dist_info)
    trainer.train(resume=resolve_resume(resume, out))
    # Ranks leave together: a rank that tears its process group down while another is still
    # writing the final checkpoint can abort inside gloo at exit ("terminate called ...").
    barrier()
    return trainer
