"""Lazy Python configs: ``L()`` records calls, ``instantiate()`` makes them.

A config file is plain Python that describes a tree of calls without making them::

    from configs.common.models import faster_rcnn
    from detkit.models.backbones.resnet import ResNet

    model = faster_rcnn(num_classes=20)          # a base: a function returning a fresh tree
    model.backbone = L(ResNet)(depth=50)         # a child sets attributes
    train = dict(output_dir="runs/frcnn", max_iter=90000)

``load_config(path, overrides)`` runs the file and returns its top-level names as a
:class:`ConfigDict`; ``instantiate(cfg.model)`` builds the objects. The import statement is the
registry: every ``_target_`` is the callable itself, never a string. ``save_config`` writes the
resolved tree back as Python that imports each target by module and qualified name.

Keys are checked against the target's signature when a node is created and when an attribute is
set, so a typo fails at once naming the key, the target, the nearest valid names and (while a
config file is loading) the file and line. Keys that shadow a ``dict`` method (``items``,
``copy``...) must be read with ``node["items"]``. Plain dicts become :class:`ConfigDict` once
loaded; a base that wants attribute access inside config files returns ``ConfigDict(...)``.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigDict", "ConfigError", "ConfigKeyError", "InstantiationError", "L", "LazyCall",
    "apply_overrides", "format_config", "instantiate", "load_config", "save_config",
]

_TARGET = "_target_"
_EXEC_MODULE = "__detkit_config__"  # __name__ of an executed config file: not importable
_LOADING: list[Path] = []  # "configs" directories (or lone files) of the loads in progress


class ConfigError(Exception):
    """A config is malformed: unknown key, bad override, target that cannot be saved."""


class ConfigKeyError(ConfigError, AttributeError):
    """A key that the node or its target does not accept."""


class InstantiationError(ConfigError):
    """A target raised while being built; the original exception is the ``__cause__``."""


def _target_name(target: Any) -> str:
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    return f"{module}.{qualname}" if module else qualname


def _accepted_names(target: Callable[..., Any]) -> list[str] | None:
    """Keyword names ``target`` accepts; None when it takes any (``**kwargs``, no signature)."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds]


def _config_location() -> str | None:
    """``file:line`` of the innermost frame in a config file being loaded, if any."""
    if not _LOADING:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename != __file__ and not filename.startswith("<"):
            path = Path(filename).resolve()
            if any(path == p or p in path.parents for p in _LOADING):
                return f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _unknown_key(owner: str, key: str, valid: list[str], location: str | None) -> str:
    """Message for an unknown key: the owner, the key, the closest valid keys, the location."""
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    msg = f"{owner} has no key {key!r}"
    msg += f"; did you mean {', '.join(map(repr, close))}?" if close else "."
    msg += f" Valid keys: {', '.join(sorted(valid)) or '(none)'}."
    return f"{location}: {msg}" if location else msg


def _node_path(node: dict) -> str:
    """The key path ``load_config`` recorded on a node (``"model.backbone"``), else ``""``."""
    return node.__dict__.get("_cfg_path", "")


class ConfigDict(dict):
    """A ``dict`` whose string keys are also attributes (``cfg.train.max_iter``)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            msg = _unknown_key(self._describe(), name, self._valid_keys(), _config_location())
            raise ConfigKeyError(msg) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            msg = _unknown_key(self._describe(), name, self._valid_keys(), _config_location())
            raise ConfigKeyError(msg) from None

    def _describe(self) -> str:
        return f"config {_node_path(self) or '(root)'}"

    def _valid_keys(self) -> list[str]:
        return [k for k in self if isinstance(k, str)]


class LazyCall(ConfigDict):
    """A recorded call: ``_target_`` (the callable) plus its keyword arguments, not yet made.

    Create it with ``L(target)(**kwargs)``. Setting a key the target does not accept raises
    :class:`ConfigKeyError`.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if key == _TARGET:
            if not callable(value):
                raise ConfigError(f"_target_ must be a callable, got {value!r}")
        elif _TARGET in self:  # absent only while copy/pickle rebuilds the node
            self._check_key(key)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Set keys one by one so that each is checked against the target's signature."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Like ``dict.setdefault``, with the key checked against the target's signature."""
        if key not in self:
            self[key] = default
        return self[key]

    def _check_key(self, key: str, location: str | None = None) -> None:
        valid = _accepted_names(self[_TARGET])
        if valid is not None and key not in valid:
            location = location or _config_location()
            raise ConfigKeyError(_unknown_key(self._describe(), key, valid, location))

    def _valid_keys(self) -> list[str]:
        valid = _accepted_names(self[_TARGET]) if _TARGET in self else None
        return sorted(set(valid or ()) | {k for k in self if k != _TARGET})

    def _describe(self) -> str:
        path = _node_path(self)
        return f"{_target_name(self.get(_TARGET))}" + (f" (at {path})" if path else "")


def L(target: Callable[..., Any]) -> Callable[..., LazyCall]:  # noqa: N802 (the name is the API)
    """Record a call to ``target``: ``L(ResNet)(depth=50)`` returns a :class:`LazyCall` node.

    Args:
        target: an importable class or function; the callable itself, never a string.

    Returns:
        A function taking keyword arguments only and returning the node. Keywords are checked
        against ``inspect.signature(target)`` at once (anything goes when it takes ``**kwargs``).
    """
    if not callable(target) or isinstance(target, str):
        raise TypeError(f"L() needs a callable target (a class or function), got {target!r}")

    def record(*args: Any, **kwargs: Any) -> LazyCall:
        if args:
            raise TypeError(f"L({_target_name(target)})() takes keyword arguments only")
        node = LazyCall()
        dict.__setitem__(node, _TARGET, target)
        location = _config_location()
        for key, value in kwargs.items():
            node._check_key(key, location)
            dict.__setitem__(node, key, value)
        return node

    return record


def instantiate(cfg: Any, key: str | None = None) -> Any:
    """Build the objects a config tree describes, depth first; a fresh object on every call.

    Args:
        cfg: a :class:`LazyCall` node, or a dict, list or tuple holding nodes, or a plain value
            (returned as it is). Dicts come back as plain ``dict``.
        key: the key path of ``cfg`` used in error messages; defaults to the path ``load_config``
            recorded on the node (e.g. ``"model"``).

    Raises:
        InstantiationError: a target raised; the message names the key path being built and the
            target, the original exception is chained as ``__cause__``.
    """
    if key is None:
        key = _node_path(cfg) if isinstance(cfg, ConfigDict) else ""
    return _build(cfg, key)


def _build(cfg: Any, path: str) -> Any:
    def sub(k: object) -> str:
        return f"{path}.{k}" if path else str(k)

    if isinstance(cfg, LazyCall):
        target = cfg[_TARGET]
        kwargs = {k: _build(v, sub(k)) for k, v in cfg.items() if k != _TARGET}
        try:
            return target(**kwargs)
        except InstantiationError:
            raise
        except Exception as exc:
            where = path or "(root)"
            raise InstantiationError(
                f"while building {where} ({_target_name(target)}): {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(cfg, Mapping):
        return {k: _build(v, sub(k)) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_build(v, sub(i)) for i, v in enumerate(cfg)]
    if isinstance(cfg, tuple):
        items = [_build(v, sub(i)) for i, v in enumerate(cfg)]
        return type(cfg)(*items) if hasattr(cfg, "_fields") else tuple(items)  # namedtuple
    return cfg


def _to_config(value: Any, path: str) -> Any:
    """Turn plain dicts into ConfigDicts (in place for nodes) and record key paths on dicts."""
    if isinstance(value, dict):
        if not isinstance(value, ConfigDict):
            value = ConfigDict(value)
        value.__dict__.setdefault("_cfg_path", path)
        for k, v in list(value.items()):
            dict.__setitem__(value, k, _to_config(v, f"{path}.{k}" if path else str(k)))
        return value
    if type(value) in (list, tuple):
        items = [_to_config(v, f"{path}.{i}") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


@contextmanager
def _config_imports(root: Path | None) -> Iterator[None]:
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
    namespace: dict[str, Any] = {"__name__": _EXEC_MODULE, "__file__": str(path)}
    if root is not None:  # lets the file use relative imports within configs/
        namespace["__package__"] = ".".join(path.parent.relative_to(root).parts)
    code = compile(path.read_text(), str(path), "exec")
    _LOADING.append(root / "configs" if root else path)
    try:
        with _config_imports(root):
            exec(code, namespace)
    finally:
        _LOADING.pop()
    cfg = ConfigDict()
    for name, value in namespace.items():
        skip = inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value)
        if not name.startswith("_") and not skip:
            dict.__setitem__(cfg, name, _to_config(value, name))
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
                problem = _unknown_key(here, part, valid, None)
            else:
                ok, problem = False, f"{here} is a {type(node).__name__}, it has no key {part!r}"
            if not ok:
                raise ConfigError(f"override {item!r} (config {source}): {problem}")
            if last:
                node[index] = value
            else:
                node = node[index]
    return cfg


def _reference(target: Any, key: str) -> tuple[str, str]:
    """``(module, qualname)`` of an importable callable, or a ConfigError naming ``key``."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    problem = None
    if not module or not qualname or "<" in qualname:
        problem = "it is a lambda or a local function/class"
    elif module in ("__main__", _EXEC_MODULE):
        problem = f"it is defined in {'a config file' if module == _EXEC_MODULE else '__main__'}"
    elif module != "configs" and not module.startswith("configs."):  # configs.* load afresh
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            problem = f"{module}.{qualname} cannot be imported"
    if problem:
        raise ConfigError(f"cannot save {key or '(root)'}: {target!r} is not an importable "
                          f"callable ({problem}); use a module-level class or function")
    return module, qualname


class _Writer:
    """Turns a config tree into Python source; ``name`` maps a callable to the text naming it."""

    def __init__(self, name: Callable[[Any, str], str], strict: bool) -> None:
        self.name = name
        self.strict = strict

    def value(self, v: Any, key: str, indent: int) -> str:
        if isinstance(v, LazyCall):
            items = [(k, x) for k, x in v.items() if k != _TARGET]
            return f"L({self.name(v[_TARGET], key)})" + self.call(items, key, indent)
        if isinstance(v, dict):
            if all(isinstance(k, str) and k.isidentifier() for k in v):
                return "dict" + self.call(list(v.items()), key, indent)
            parts = [f"{k!r}: {self.value(x, f'{key}.{k}', indent + 1)}" for k, x in v.items()]
            return self.block("{", "}", parts, indent)
        if isinstance(v, (list, tuple)):
            parts = [self.value(x, f"{key}.{i}", indent + 1) for i, x in enumerate(v)]
            if isinstance(v, tuple) and len(parts) == 1:
                return f"({parts[0]},)"
            return self.block(*("()" if isinstance(v, tuple) else "[]"), parts, indent)
        if isinstance(v, float) and not math.isfinite(v):
            return f"float({str(v)!r})"
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
            return repr(v)
        if inspect.isclass(v) or inspect.isroutine(v):
            return self.name(v, key)
        if self.strict:
            raise ConfigError(f"cannot save {key}: {type(v).__name__} value {v!r} is not a "
                              "Python literal, a config node or an importable callable")
        return repr(v)

    def call(self, items: list[tuple[str, Any]], key: str, indent: int) -> str:
        parts = [(f"{k}=" if k.isidentifier() else f"**{{{k!r}: ") +
                 self.value(x, f"{key}.{k}", indent + 1) + ("" if k.isidentifier() else "}")
                 for k, x in items]
        return self.block("(", ")", parts, indent)

    @staticmethod
    def block(open_: str, close: str, parts: list[str], indent: int) -> str:
        """Parts on one line when short and flat, else one per line with trailing commas."""
        flat = ", ".join(parts)
        if "\n" not in flat and len(flat) + 4 * indent < 80:
            return open_ + flat + close
        pad = "    " * indent
        return open_ + "\n" + "".join(f"{pad}    {p},\n" for p in parts) + pad + close

    def body(self, cfg: Mapping[str, Any]) -> str:
        out = []
        for key, v in cfg.items():
            if not (isinstance(key, str) and key.isidentifier()):
                raise ConfigError(f"cannot write top-level key {key!r}: not a Python name")
            out.append(f"{key} = {self.value(v, key, 0)}\n")
        return "\n".join(out)


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as a Python file that ``load_config`` turns into the same tree.

    Each target is imported by module and qualified name; values are written as literals.

    Raises:
        ConfigError: a target is a lambda, a local function or otherwise not importable, or a
            value is not a literal; the message names the key.
    """
    imports: dict[tuple[str, str], str] = {}  # (module, top-level name) -> local alias
    taken = set(cfg) | {"L"}

    def name(target: Any, key: str) -> str:
        module, qualname = _reference(target, key)
        top, _, rest = qualname.partition(".")
        if (module, top) not in imports:
            alias, n = top, 1
            while alias in taken:
                alias, n = f"{top}_{n}", n + 1
            taken.add(alias)
            imports[(module, top)] = alias
        return imports[(module, top)] + (f".{rest}" if rest else "")

    body = _Writer(name, strict=True).body(cfg)
    source = getattr(cfg, "__dict__", {}).get("_cfg_file", "<in memory>")
    lines = ["# Resolved config written by detkit.config.save_config", f"# from {source}",
             "from detkit.config import L"]
    by_module: dict[str, list[str]] = {}
    for (module, top), alias in sorted(imports.items()):
        by_module.setdefault(module, []).append(top + (f" as {alias}" if alias != top else ""))
    lines += [f"from {module} import {', '.join(names)}" for module, names in by_module.items()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n" + body)


def format_config(cfg: Any) -> str:
    """Readable text of a config for logs: the ``save_config`` body with dotted target names.

    Args:
        cfg: a loaded config (one ``name = ...`` line per top-level key), or any node or value.
    """
    writer = _Writer(lambda target, key: _target_name(target), strict=False)
    if isinstance(cfg, Mapping) and not isinstance(cfg, LazyCall):
        return writer.body(cfg)
    return writer.value(cfg, "", 0)
