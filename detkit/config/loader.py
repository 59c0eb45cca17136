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
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detkit.config.lazy import (
    EXEC_MODULE, LOADING, TARGET, ConfigDict, ConfigError, LazyCall, adopt, unknown_key,
)
from detkit.config.override_types import check_override_type, default_of

__all__ = ["ConfigFileError", "apply_overrides", "config_imports", "load_config"]

# Errors of a config file's own code that are reported at its line (a ConfigError is left as it is:
# it already names the file and key).
_CODE_ERRORS = (NameError, ImportError, AttributeError, TypeError)


class ConfigFileError(ConfigError, ValueError):
    """A config file (or a base it imports) that does not compile or fails while it runs; the
    one-line message is ``file:line: reason``."""


def _shown(filename: str) -> str:
    """A file name as the user would type it: relative to the working folder when inside it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative


def _syntax_message(error: SyntaxError) -> str:
    msg = error.msg or "invalid syntax"
    reason = msg if msg.startswith("invalid syntax") else f"invalid syntax ({msg})"
    return f"{_shown(error.filename or '<config>')}:{error.lineno or '?'}: {reason}"


def _code_message(error: BaseException, path: Path, root: Path | None) -> str:
    """``file:line: Type: message`` at the innermost frame that is a config file (``path`` or a
    file under ``root/configs``), else at ``path``."""
    config_dir = str(root / "configs") + os.sep if root is not None else None
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if frame.filename == str(path) or (config_dir and frame.filename.startswith(config_dir))]
    where = f"{_shown(frames[-1].filename)}:{frames[-1].lineno}" if frames else _shown(str(path))
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{where}: {type(error).__name__}" + (f": {lines[0]}" if lines else "")


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

    Raises:
        ConfigFileError: the file, or a base it imports, has a syntax error, or its code raises
            a ``NameError``, ``ImportError``, ``AttributeError`` or ``TypeError``; the message is
            ``file:line: reason`` (``configs/x.py:12: invalid syntax ('(' was never closed)``).
        ConfigError: a key the target does not take (file and line named), a bad override.
    """
    path = Path(path).resolve()
    root = next((p.parent for p in path.parents if p.name == "configs"), None)
    namespace: dict[str, Any] = {"__name__": EXEC_MODULE, "__file__": str(path)}
    if root is not None:  # lets the file use relative imports within configs/
        namespace["__package__"] = ".".join(path.parent.relative_to(root).parts)
    try:
        code = compile(path.read_text(), str(path), "exec")
    except SyntaxError as error:
        raise ConfigFileError(_syntax_message(error)) from error
    LOADING.append(root / "configs" if root else path)
    try:
        with config_imports(root):
            exec(code, namespace)
    except ConfigError:
        raise
    except SyntaxError as error:  # in a base the file imports
        raise ConfigFileError(_syntax_message(error)) from error
    except _CODE_ERRORS as error:
        raise ConfigFileError(_code_message(error, path, root)) from error
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


def _replaced_value(node: Any, index: Any) -> tuple[Any, Any]:
    """The value an override of ``node[index]`` replaces (the target's default for an argument the
    node leaves unset; ``inspect.Parameter.empty`` when none) and the node's target, if any."""
    target = node[TARGET] if isinstance(node, LazyCall) and TARGET in node else None
    if isinstance(node, list) or index in node:
        return node[index], target
    return (default_of(target, index) if target is not None else inspect.Parameter.empty), target


def apply_overrides(cfg: ConfigDict, overrides: list[str]) -> ConfigDict:
    """Apply ``"a.b.c=value"`` overrides in place; values are Python literals, else strings.

    Every key on the path must exist (a node also accepts any argument of its target); list
    items are addressed by index (``train.steps.0=100``). The value must fit the one it replaces
    (the config's, or the target's default for an unset argument; the rules are in
    :mod:`detkit.config.override_types`): ``optimizer.lr=fast`` is refused here, not deep in
    the optimiser.

    Raises:
        ConfigError: malformed override, or a path that does not exist (the message names the
            path, the config file and the nearest valid keys).
        OverrideTypeError: a value of the wrong type (a ``ConfigError`` and a ``ValueError``;
            the message names the key, the expected type and the config's value).
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
                current, target = _replaced_value(node, index)
                check_override_type(key.strip(), value, current, target)
                node[index] = value
            else:
                node = node[index]
    return cfg
