"""The loader: run a Python config file, apply ``key.path=value`` overrides.

``load_config(path, overrides)`` runs the file and returns its top-level names as a
:class:`~detkit.config.lazy.ConfigDict`. While the file runs, the ``configs`` package name is bound
to the ``configs/`` folder that holds the file (the checkout's, or the one installed with detkit
under ``detkit/model_zoo/configs``), so ``from configs.common.rcnn import faster_rcnn`` finds the
bases next to the file from any working directory, and a base never carries state between loads.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detkit.config.lazy import (
    EXEC_MODULE, LOADING, ConfigDict, ConfigError, adopt, unknown_key,
)

__all__ = ["apply_overrides", "config_imports", "load_config"]


def _to_config(value: Any, path: str) -> Any:
    """Turn plain dicts into ConfigDicts (in place for nodes) and record key paths on dicts."""
    if isinstance(value, dict):
        if not isinstance(value, ConfigDict):
            value = ConfigDict(value)
        value.__dict__.setdefault("_cfg_path", path)
        for k, v in list(value.items()):
            child = _to_config(v, f"{path}.{k}" if path else str(k))
            dict.__setitem__(value, k, child)
            adopt(value, child)
        return value
    if type(value) in (list, tuple):
        items = [_to_config(v, f"{path}.{i}") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


@contextmanager
def config_imports(root: Path | None) -> Iterator[None]:
    """Make ``root/configs`` the ``configs`` package while a config file runs, then restore."""
    if root is None:
        yield
        return
    mine = lambda name: name == "configs" or name.startswith("configs.")  # noqa: E731
    saved = {name: mod for name, mod in sys.modules.items() if mine(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    # Bind the package name to this tree's folder alone. Left to the import system, a regular
    # package named `configs` elsewhere on sys.path (one with an __init__.py) would win over a
    # namespace folder here, and a namespace `configs` would merge several trees.
    package_dir = root / "configs"
    spec = importlib.machinery.ModuleSpec("configs", None, is_package=True)
    spec.submodule_search_locations = [str(package_dir)]
    package = importlib.util.module_from_spec(spec)
    init_file = package_dir / "__init__.py"
    if init_file.is_file():
        exec(compile(init_file.read_text(), str(init_file), "exec"), package.__dict__)
    sys.modules["configs"] = package
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if mine(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ConfigDict:
    """Run a Python config file and return its top-level names as a config.

    The directory holding the ``configs/`` folder that contains the file (if any) is put first
    on ``sys.path`` while the file runs, and ``configs.*`` modules are imported afresh, so that
    ``from configs.common.x import y`` (or ``from ..common.x import y``) works and a base never
    carries state between loads.

    Args:
        path: the config file.
        overrides: ``"a.b.c=value"`` strings applied after loading (see :func:`apply_overrides`).

    Returns:
        The names the file defines (modules, classes, functions and ``_private`` names left out),
        with plain dicts turned into :class:`ConfigDict`.
    """
    path = Path(path).resolve()
    root = next((p.parent for p in path.parents if p.name == "configs"), None)
    namespace: dict[str, Any] = {"__name__": EXEC_MODULE, "__file__": str(path)}
    if root is not None:  # lets the file use relative imports within configs/
        namespace["__package__"] = ".".join(path.parent.relative_to(root).parts)
    code = compile(path.read_text(), str(path), "exec")
    LOADING.append(root / "configs" if root else path)
    try:
        with config_imports(root):
            exec(code, namespace)
    finally:
        LOADING.pop()
    cfg = ConfigDict()
    for name, value in namespace.items():
        skip = inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value)
        if not name.startswith("_") and not skip:
            cfg[name] = _to_config(value, name)
    cfg.__dict__["_cfg_path"] = ""
    cfg.__dict__["_cfg_file"] = str(path)
    return apply_overrides(cfg, overrides or [])


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def apply_overrides(cfg: ConfigDict, overrides: list[str]) -> ConfigDict:
    """Apply ``"a.b.c=value"`` overrides in place; values are Python literals, else strings.

    Every key on the path must exist (a node also accepts any argument of its target); list
    items are addressed by index (``train.steps.0=100``).

    Raises:
        ConfigError: malformed override, or a path that does not exist (the message names the
            path, the config file and the nearest valid keys).
    """
    source = cfg.__dict__.get("_cfg_file", "<in memory>")
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        value = _to_config(_parse_value(text.strip()), key.strip())
        node: Any = cfg
        for depth, part in enumerate(parts):
            here, last = "config " + (".".join(parts[:depth]) or "(root)"), depth == len(parts) - 1
            index: Any = part
            if isinstance(node, list):
                ok = part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node)
                index = int(part) if ok else None
                problem = f"{here} is a list of {len(node)} items, no index {part!r}"
            elif isinstance(node, dict):
                valid = node._valid_keys() if isinstance(node, ConfigDict) else list(node)
                ok = part in valid and (last or part in node)
                problem = unknown_key(here, part, valid, None)
            else:
                ok, problem = False, f"{here} is a {type(node).__name__}, it has no key {part!r}"
            if not ok:
                raise ConfigError(f"override {item!r} (config {source}): {problem}")
            if last:
                node[index] = value
            else:
                node = node[index]
    return cfg
