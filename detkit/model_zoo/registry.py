"""The shipped configs by name: ``list_configs()``, ``get_config_file(name)``, ``get_config(name)``.

A name is a config file's stem (``"yolov3_tiny_416_coco"``; ``"yolo/yolov3_tiny_416_coco"`` works
too). The configs are found from any working directory: first the ``configs`` folder installed
inside the package (``detkit/model_zoo/configs``, package data of a wheel), else the checkout's
top-level ``configs/`` next to the ``detkit`` package (a source tree or an editable install).
``$DETKIT_CONFIGS`` points at another tree (a folder named ``configs``, its bases under ``common/``).
"""

from __future__ import annotations

import difflib
import importlib
import os
from pathlib import Path
from types import ModuleType

from detkit.config import ConfigDict, ConfigError, config_imports, load_config

__all__ = [
    "UnknownConfigError", "config_module", "configs_dir", "get_config", "get_config_file", "list_configs",
    "resolve_config_file",
]

_PACKAGED = Path(__file__).resolve().parent / "configs"
_CHECKOUT = Path(__file__).resolve().parents[2] / "configs"


class UnknownConfigError(ConfigError, LookupError):
    """No shipped config has that name."""


def configs_dir() -> Path:
    """The ``configs`` folder the zoo reads (see the module docstring).

    Raises:
        FileNotFoundError: none of the places holds one.
    """
    override = os.environ.get("DETKIT_CONFIGS")
    candidates = [Path(override)] if override else [_PACKAGED, _CHECKOUT]
    for folder in candidates:
        if folder.is_dir():
            return folder
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"no detkit configs folder found (tried {tried}); reinstall detkit or set $DETKIT_CONFIGS")


def _config_files() -> dict[str, Path]:
    root = configs_dir()
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if path.name == "__init__.py" or relative.parts[0] in ("common", "__pycache__") or len(relative.parts) < 2:
            continue
        if path.stem in files:
            raise ConfigError(f"two configs are named {path.stem!r}: {files[path.stem]} and {path}")
        files[path.stem] = path
    return files


def list_configs() -> list[str]:
    """Names of the shipped experiment configs (file stems), sorted."""
    return sorted(_config_files())


def get_config_file(name: str) -> Path:
    """The file of a shipped config.

    Args:
        name: its stem, optionally with its folder (``"yolo/yolov3_tiny_416_coco"``, ``.py`` allowed).

    Raises:
        UnknownConfigError: no such config; the message lists the closest names.
    """
    files = _config_files()
    stem = Path(name).stem if name.endswith(".py") else Path(name).name
    path = files.get(stem)
    if path is not None and (len(Path(name).parts) < 2 or path.parent.name == Path(name).parent.name):
        return path
    close = difflib.get_close_matches(stem, list(files), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise UnknownConfigError(f"no model-zoo config named {name!r}{hint} (detkit.model_zoo.list_configs() "
                             f"lists the {len(files)} shipped in {configs_dir()})")


def resolve_config_file(config: str | os.PathLike[str]) -> Path:
    """A config file named by path or by model-zoo name (``faster_rcnn_r50_fpn_1x_coco``).

    Raises:
        FileNotFoundError: a path (it has a ``/`` or ends in ``.py``) to no file and no zoo config.
        UnknownConfigError: neither a file nor a zoo name (closest names listed).
    """
    path = Path(config)
    if path.is_file():
        return path
    name = str(config)
    try:
        return get_config_file(name)  # also "yolo/yolov3_tiny_416_coco"
    except UnknownConfigError:
        if name.endswith(".py") or os.sep in name or "/" in name:  # meant as a path
            raise FileNotFoundError(f"config not found: {path}") from None
        raise


def get_config(name: str, overrides: list[str] | None = None) -> ConfigDict:
    """Load a shipped config by name, with ``"key.path=value"`` overrides."""
    return load_config(get_config_file(name), overrides)


def config_module(name: str) -> ModuleType:
    """Import a module of the zoo's configs tree, e.g. ``config_module("common.rcnn").faster_rcnn``:
    the factories, usable from Python at any working directory. A fresh module on every call."""
    root = configs_dir()
    with config_imports(root.parent if root.name == "configs" else None):
        return importlib.import_module(f"configs.{name}")
