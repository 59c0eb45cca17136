"""``build_model(name_or_config)`` and ``load(checkpoint_or_name)``: models without a config path.

- :func:`build_model` builds the ``model`` of a zoo config (by name), of a config file, or of a
  loaded config / ``L()`` node, with weights as initialised.
- :func:`load` rebuilds a trained model from a self-contained checkpoint (every checkpoint the
  trainer writes carries its model config in the safe data form of :mod:`detkit.config.data` and
  its class names), or returns a zoo model with its pretrained weights (configs that set
  ``pretrained = True``: their ``model`` builds with the weights loaded).

Checkpoints are read by :mod:`detkit.utils.checkpoint` (``torch.load(weights_only=True)``) and
their config data import targets from detkit's model modules only; no code from a file ever runs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detkit.config import (
    CLASS_NAMES_KEY, DEFAULT_ALLOWED_MODULES, DEFAULT_DENIED_MODULES, MODEL_CONFIG_KEY, ConfigDict,
    ConfigError, LazyCall, apply_overrides, config_from_data, instantiate, load_config,
)
from detkit.model_zoo.registry import get_config_file, resolve_config_file
from detkit.utils.checkpoint import CheckpointError, load_weights, read_checkpoint, save_checkpoint
from detkit.utils.pypi_files import default_cache_dir

__all__ = ["CheckpointError", "build_model", "load", "load_config_like", "pretrained_weights_file", "read_checkpoint"]


def _looks_like_path(value: str | Path) -> bool:
    text = str(value)
    return isinstance(value, Path) or "/" in text or "\\" in text or text.endswith((".py", ".pth", ".pt"))


def load_config_like(config: str | os.PathLike[str] | Mapping[str, Any],
                     overrides: Sequence[str] | None = None) -> ConfigDict:
    """A loaded config from a path, a model-zoo name or an already loaded config, with overrides.

    A loaded config is copied before the overrides apply, so the caller's stays as it was.

    Raises:
        FileNotFoundError, UnknownConfigError: as :func:`resolve_config_file`.
        ConfigError: a bad override.
    """
    if isinstance(config, (str, os.PathLike)):
        return load_config(resolve_config_file(config), list(overrides or []))
    return apply_overrides(copy.deepcopy(config), list(overrides or [])) if overrides else config


def _model_node(config: Any, overrides: Sequence[str] | None) -> Any:
    """The ``model`` node of a zoo name, config file, loaded config or node."""
    if isinstance(config, LazyCall):
        if overrides:
            holder = apply_overrides(ConfigDict(model=copy.deepcopy(config)), list(overrides))
            return holder["model"]
        return config
    if not isinstance(config, (str, os.PathLike, Mapping)):
        raise TypeError(f"build_model() takes a zoo name, a config path, a config or an L() node, got "
                        f"{type(config).__name__}")
    cfg = load_config_like(config, overrides)
    if "model" not in cfg:
        source = getattr(cfg, "__dict__", {}).get("_cfg_file", "the config")
        raise ConfigError(f"{source} defines no `model`")
    return cfg["model"]


def build_model(config: str | Path | Mapping[str, Any] | LazyCall,
                overrides: Sequence[str] | None = None) -> nn.Module:
    """Build the model a config describes (weights as initialised, or as its config loads them).

    Args:
        config: a model-zoo name (``"faster_rcnn_r50_fpn_1x_coco"``), a config file path, a loaded
            config (its ``model`` is built) or a ``model`` node.
        overrides: ``"key.path=value"`` strings (paths from the config's top, ``model.num_classes=3``).

    Raises:
        UnknownConfigError: no zoo config of that name (closest names listed).
        ConfigError: a bad override or a config without ``model``.
    """
    return instantiate(_model_node(config, overrides), "model")


def _from_checkpoint(path: Path, allowed_modules: Sequence[str]) -> nn.Module:
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("model")
    if not isinstance(state, Mapping) or MODEL_CONFIG_KEY not in checkpoint:
        has = ", ".join(map(str, checkpoint)) or "nothing"
        raise CheckpointError(
            f"{path}: not a self-contained detkit checkpoint (it needs 'model' and '{MODEL_CONFIG_KEY}'; "
            f"it has {has}); build the model from its config and load the weights into it")
    node = config_from_data(checkpoint[MODEL_CONFIG_KEY], "model",
                            allowed_modules=tuple(DEFAULT_ALLOWED_MODULES) + tuple(allowed_modules),
                            denied_modules=DEFAULT_DENIED_MODULES)
    model = instantiate(node, "model")
    try:
        load_weights(model, state, strict=True, drop_ddp_prefix=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes: {exc}") from exc
    names = checkpoint.get(CLASS_NAMES_KEY)
    if names and getattr(model, "class_names", None) is None and len(names) == getattr(model, "num_classes", -1):
        model.class_names = list(names)
    return model


def load(path_or_name: str | Path, device: str | torch.device = "cpu", *,
         allowed_modules: Sequence[str] = ()) -> nn.Module:
    """A trained model from a self-contained checkpoint, or a pretrained zoo model, in eval mode.

    Args:
        path_or_name: a checkpoint file (``runs/x/model_final.pth``), or a zoo name whose config has
            pretrained weights (``"yolov3_tiny_coco_pretrained"``).
        device: where the model goes.
        allowed_modules: module prefixes, besides detkit's model modules, whose classes the
            checkpoint's config may build (e.g. ``["my_project.models"]``).

    Raises:
        FileNotFoundError: a path that does not exist (a ``CheckpointNotFoundError``).
        CheckpointError: a truncated or foreign file, one without a model config, or weights that
            do not fit (the message names the path).
        UnsafeConfigError: the checkpoint's config names a target outside the allowed modules.
        UnknownConfigError: neither a file nor a zoo name.
        ValueError: a zoo name whose config has no pretrained weights.
    """
    path = Path(path_or_name)
    if path.is_file() or (_looks_like_path(path_or_name) and not str(path_or_name).endswith(".py")):
        model = _from_checkpoint(path, allowed_modules)
    else:
        name = str(path_or_name)
        cfg = load_config(get_config_file(name))
        if not cfg.get("pretrained", False):
            raise ValueError(f"model-zoo config {name!r} has no pretrained weights; detkit.build_model({name!r}) "
                             "builds it untrained, detkit.load(<checkpoint>) loads a trained one")
        model = instantiate(cfg["model"], "model")
    return model.to(device).eval()


def pretrained_weights_file(name: str, cache_dir: str | Path | None = None) -> Path:
    """The weights of a pretrained zoo model as a detkit checkpoint file, written once and cached.

    ``train.init_checkpoint`` (``detkit train --weights NAME``) takes a file; this makes one from a
    zoo config that loads its own weights (``pretrained = True``, e.g. the official COCO
    YOLOv3-tiny as ``"yolov3_tiny_coco_pretrained"``): ``{"model": state dict, "class_names"}``.

    Args:
        name: the zoo config name.
        cache_dir: cache root (default ``$DETKIT_CACHE`` or ``~/.cache/detkit``); the file is
            ``<cache_dir>/zoo_weights/<name>.pth``.

    Raises:
        UnknownConfigError: no zoo config of that name.
        ValueError: the config has no pretrained weights.
    """
    path = Path(cache_dir or default_cache_dir()) / "zoo_weights" / f"{name}.pth"
    if not path.is_file():
        model = load(name)
        save_checkpoint({"model": model.state_dict(), "class_names": list(getattr(model, "class_names", None) or []),
                         "meta": {"pretrained_zoo_config": name}}, path)
    return path
