"""From a loaded config to a running :class:`~detkit.engine.trainer.Trainer`.

The config layout is documented in :mod:`detkit.engine.trainer`; the ``train`` keys in
:mod:`detkit.engine.settings`. :func:`run_training` is what ``tools/train.py`` calls; the steps
are separate functions so that a script or a test can replace one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from detkit.config import (
    CLASS_NAMES_KEY, MODEL_CONFIG_KEY, ConfigDict, LazyCall, apply_overrides, format_config,
    instantiate, load_config, model_config_entries, save_config,
)
from detkit.engine.checkpoint import Checkpointer
from detkit.engine.class_check import check_classes
from detkit.engine.console_log import TqdmLoggingHandler
from detkit.engine.evaluation import config_evaluator
from detkit.engine.model_setup import freeze_by_prefix, load_init_checkpoint, write_init_report
from detkit.engine.run_folder import prepare_output_dir
from detkit.engine.rng import seed_everything
from detkit.engine.schedules import LRSchedule
from detkit.engine.settings import TrainSettings
from detkit.engine.tensorboard_log import require_tensorboard
from detkit.engine.trainer import EvaluateFn, Trainer
from detkit.utils.distributed import (
    DistInfo, barrier, convert_sync_batchnorm, destroy_distributed, get_rank, init_distributed,
    is_main_process,
)

logger = logging.getLogger(__name__)

__all__ = ["build_trainer", "check_train_config", "instantiate_with", "resolve_resume",
           "run_training", "setup_logging"]

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
    return instantiate(node, key, defaults=supplied)


def setup_logging(output_dir: Path | None, level: int = logging.INFO) -> None:
    """Log to stderr on every rank (rank 0 at ``level``, others at WARNING) and, on rank 0, to
    ``output_dir/log.txt``. Console lines go through ``tqdm.write``
    (:class:`~detkit.engine.console_log.TqdmLoggingHandler`), above the progress bars."""
    root = logging.getLogger()
    root.setLevel(level if is_main_process() else logging.WARNING)
    fmt = logging.Formatter(f"[%(asctime)s r{get_rank()} %(name)s %(levelname)s] %(message)s",
                            "%H:%M:%S")
    for handler in list(root.handlers):
        if getattr(handler, "_detkit", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [TqdmLoggingHandler()]
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


def _evaluation_configured(cfg: Mapping[str, Any]) -> str | None:
    """None when the config can evaluate, else why not."""
    if "test" not in cfg["dataloader"]:
        return "the config has no dataloader.test"
    if "evaluator" in cfg and cfg["evaluator"] is None:
        return "the config sets evaluator=None"
    return None


def check_train_config(cfg: ConfigDict, output_dir: str | Path | None = None,
                       hooks: Sequence[Any] | None = None) -> TrainSettings:
    """The checked ``train`` section, before anything is built: the sections are there, every
    ``train`` key has its type and range, what ``best_metric`` / ``patience`` need is configured,
    and TensorBoard is installed when ``train.tensorboard`` asks for it.

    Args:
        cfg: The loaded config.
        output_dir: Overrides ``train.output_dir``.
        hooks: The instantiated ``train.hooks`` (default: the config's nodes, unbuilt).

    Raises:
        ValueError: naming the config file and the ``train`` key (a
            :class:`~detkit.engine.tensorboard_log.TensorBoardMissingError` for TensorBoard).
    """
    source = _check_sections(cfg)
    train_cfg = dict(cfg["train"])
    if output_dir is not None:
        train_cfg["output_dir"] = str(output_dir)
    if hooks is not None:
        train_cfg["hooks"] = list(hooks)
    settings = TrainSettings.from_config(train_cfg, source)
    missing = _evaluation_configured(cfg)
    for key in ("best_metric", "patience"):
        value = getattr(settings, key)
        if value is not None and missing:
            raise ValueError(f"{source}: train.{key}={value!r} needs an evaluator, but {missing} "
                             f"(set train.{key}=None to train without)")
    if settings.tensorboard and is_main_process():
        require_tensorboard()
    return settings


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    """``None``, ``"auto"`` or a checkpoint path (which must exist).

    ``"auto"`` is the newest intact checkpoint of ``output_dir``
    (:meth:`~detkit.engine.checkpoint.Checkpointer.latest_intact`: a truncated or unreadable
    newer one is skipped with a warning naming it), or ``None`` to start fresh when there is none.

    Raises:
        CheckpointError: ``"auto"`` in a folder whose checkpoints are all unreadable.
        FileNotFoundError: a path to no file.
    """
    if resume is None:
        return None
    if resume == "auto":
        latest = Checkpointer(output_dir, remove_stale=False).latest_intact()
        logger.info("--resume auto: %s", latest or f"no checkpoint in {output_dir}, starting fresh")
        return latest
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint file")
    return path


def _build_evaluator(cfg: Mapping[str, Any], model: nn.Module, source: str) -> EvaluateFn | None:
    """``evaluator.evaluate(model, dataloader.test)`` when the config has a test loader; the
    evaluator is the config's ``evaluator`` section or, without one, built from the test dataset
    (:func:`detkit.engine.evaluation.config_evaluator`; ``evaluator = None`` turns it off). The
    test dataset's classes are checked against ``model``'s first."""
    if "test" not in cfg["dataloader"]:
        if cfg.get("evaluator") is not None:
            raise ValueError("config has an evaluator but no dataloader.test")
        return None
    if "evaluator" in cfg and cfg["evaluator"] is None:
        return None
    test_loader: DataLoader = instantiate(cfg["dataloader"]["test"], "dataloader.test")
    check_classes(model, test_loader.dataset, f"{source}: dataloader.test")
    evaluator = config_evaluator(cfg, test_loader.dataset)

    def evaluate(model: nn.Module) -> Mapping[str, float]:
        return evaluator.evaluate(model, test_loader)

    return evaluate


def _class_names(model: nn.Module, data_loader: DataLoader) -> list[str] | None:
    """The model's class names, else those of its training dataset."""
    names = getattr(model, "class_names", None)
    if names is None:
        dataset = data_loader.dataset
        while not hasattr(dataset, "class_names") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset
        names = getattr(dataset, "class_names", None)
    return None if names is None else [str(name) for name in names]


def build_trainer(cfg: ConfigDict, output_dir: str | Path | None = None,
                  dist_info: DistInfo | None = None) -> Trainer:
    """Build model, data, optimiser, schedule and trainer from a loaded config.

    Args:
        cfg: A config from :func:`detkit.config.load_config` (overrides applied).
        output_dir: Overrides ``train.output_dir``.
        dist_info: Process placement; :func:`init_distributed` is called when omitted.

    Raises:
        ValueError: a missing section or a bad ``train`` key (wrong type, out of range, needing
            an evaluator the config lacks), naming the key and config file, before any part is
            built (:func:`check_train_config`).
    """
    source = _check_sections(cfg)
    check_train_config(cfg, output_dir)  # every train key, before a hook or a model is built
    hooks = instantiate(list(cfg["train"].get("hooks") or []), "train.hooks")
    settings = check_train_config(cfg, output_dir, hooks)
    dist_info = dist_info or init_distributed(settings.device)
    out = Path(settings.output_dir)

    # Seeds differ per rank so that model-side randomness is not mirrored across ranks; the
    # data order and augmentation depend on settings.seed only (detkit.engine.data).
    seed_everything(settings.seed + dist_info.rank)
    model: nn.Module = instantiate(cfg["model"], "model")
    freeze_by_prefix(model, settings.freeze)
    if settings.init_checkpoint:  # fine-tuning: the report goes to the log and out/init_report.json
        write_init_report(load_init_checkpoint(model, settings.init_checkpoint),
                          out if is_main_process() else None)
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
    check_classes(model, data_loader.dataset, f"{source}: dataloader.train")
    evaluate = _build_evaluator(cfg, model, source)
    # What makes every checkpoint self-contained: detkit.load() rebuilds the model from these.
    entries = model_config_entries(cfg["model"], _class_names(model, data_loader))
    config_text = ""
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.py")
        config_text = (out / "config.py").read_text()
        logger.info("config %s (resolved copy in %s):\n%s", source, out / "config.py",
                    format_config(cfg))
    return Trainer(model, optimizer, lr_schedule, data_loader, settings,
                   device=dist_info.device, evaluate=evaluate, config_text=config_text,
                   model_config=entries[MODEL_CONFIG_KEY], class_names=entries[CLASS_NAMES_KEY])


def run_training(cfg: ConfigDict | str | Path, output_dir: str | Path | None = None,
                 resume: str | None = None, overrides: Sequence[str] | None = None,
                 overwrite: bool | None = None) -> Trainer:
    """Set up processes and logging, build the trainer, train; returns the finished trainer.

    The one call a training script needs (``tools/train.py``, ``detkit train``): under torchrun
    it joins the process group, and leaves it at the end when it joined it.

    Args:
        cfg: The loaded config, or a config file to load.
        output_dir: Overrides ``train.output_dir``.
        resume: ``None``, ``"auto"`` or a checkpoint path.
        overrides: ``"key.path=value"`` strings applied to the config first.
        overwrite: Overrides ``train.overwrite``: a fresh run into a folder holding another run
            deletes that run's checkpoints and metrics instead of stopping.

    Returns:
        The trainer after training; its checkpoints are in the output folder
        (``model_final.pth`` rebuilds with ``detkit.load``).

    Raises:
        ValueError: a bad ``train`` section (:func:`check_train_config`), before any work.
        detkit.engine.run_folder.OutputDirError: before any work, when the output folder holds
            another run and neither ``resume`` nor ``overwrite`` is given, or cannot be written.
    """
    if isinstance(cfg, (str, Path)):
        cfg = load_config(cfg, list(overrides or []))
    elif overrides:
        cfg = apply_overrides(cfg, list(overrides))
    settings = check_train_config(cfg, output_dir)  # before the output folder is touched
    out = Path(settings.output_dir)
    if overwrite is None:
        overwrite = settings.overwrite
    prepare_output_dir(out, resume, overwrite)
    resume_path = resolve_resume(resume, out)  # a bad --resume stops before the model and data are built
    joined_here = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    dist_info = init_distributed(settings.device)
    try:
        setup_logging(out)
        logger.info("torch %s, device %s, rank %d of %d", torch.__version__, dist_info.device,
                    dist_info.rank, dist_info.world_size)
        trainer = build_trainer(cfg, out, dist_info)
        trainer.train(resume=resume_path)
        # Ranks leave together: a rank that tears its process group down while another is still
        # writing the final checkpoint can abort inside gloo at exit ("terminate called ...").
        barrier()
    finally:
        if joined_here:
            destroy_distributed()
    return trainer
