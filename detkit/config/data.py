"""A safe data form of config trees, for checkpoints: nested dicts, lists, tuples and literals.

``config_to_data(node)`` turns a tree into plain data that ``torch.load(weights_only=True)`` reads
back, and ``config_from_data(data)`` turns it into the same tree again::

    L(FPN)(in_shapes=None, out_channels=256)
    -> {"_target_": "detkit.models.necks.fpn:FPN", "in_shapes": None, "out_channels": 256}

Markers: ``"_target_"`` (a call; the callable as ``"module:qualname"``), ``"_config_only_"`` (the
node's config-only keys), ``{"_inherit_": key}`` (an :class:`~detkit.config.Inherit`),
``{"_ref_": "module:qualname"}`` (a class or function used as a value). Placeholders whose key
is found inside the tree stay placeholders; those that read a value from above it are replaced by
that value, so the data describe the tree on its own.

Reading data never runs code from the file: a target or reference is imported only when its module
lies under :data:`DEFAULT_ALLOWED_MODULES` (and not under :data:`DEFAULT_DENIED_MODULES`), the
object found must be a class or function defined there, and no dunder attribute is followed.
Anything else is refused with an :class:`UnsafeConfigError` naming the key and the target.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from detkit.config.instantiate import resolve_inherit
from detkit.config.lazy import (
    TARGET, ConfigDict, ConfigError, Inherit, L, LazyCall, ancestors, node_path,
)
from detkit.config.loader import _to_config
from detkit.config.writer import reference

__all__ = [
    "CLASS_NAMES_KEY", "DEFAULT_ALLOWED_MODULES", "DEFAULT_DENIED_MODULES", "MODEL_CONFIG_KEY",
    "UnsafeConfigError", "config_from_data", "config_to_data", "model_config_entries",
]

# Where model trees come from: the modules that define modules. detkit.config and detkit.model_zoo
# would run a config file, detkit.engine and detkit.data have no business in a model section.
DEFAULT_ALLOWED_MODULES: tuple[str, ...] = ("detkit.models", "detkit.ops", "detkit.structures")
# Inside them, the weight converters and the zoo's ready-made models fetch and write files at paths
# given as arguments: a checkpoint may not call them.
DEFAULT_DENIED_MODULES: tuple[str, ...] = ("detkit.models.convert", "detkit.models.zoo")

# Arguments of a call that name a file of initial weights (the backbones' ``weights``): a
# checkpoint's state dict supersedes them, so its model config drops them.
INIT_WEIGHTS_KEYS: tuple[str, ...] = ("weights",)

# The keys of a self-contained checkpoint (besides "model", the state dict).
MODEL_CONFIG_KEY = "model_config"
CLASS_NAMES_KEY = "class_names"

_INHERIT, _REF, _ONLY = "_inherit_", "_ref_", "_config_only_"
_MARKERS = (TARGET, _INHERIT, _REF, _ONLY)
_LITERALS = (type(None), bool, int, float, str)


class UnsafeConfigError(ConfigError):
    """Config data name a target outside the allowed modules, or one that is not a class/function."""


def _sub(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


# ------------------------------------------------------------------------------------------ to data


def config_to_data(node: Any, key: str | None = None) -> Any:
    """The data form of a config tree (see the module docstring).

    Args:
        node: a :class:`LazyCall`, a dict/list/tuple holding nodes, or a literal.
        key: its key path for messages (default: the path recorded at load, e.g. ``"model"``).

    Raises:
        ConfigError: a value that is not a literal, a node, a placeholder or an importable
            callable; a placeholder that no enclosing node answers; a dict key that is a marker.
    """
    if key is None:
        key = node_path(node) if isinstance(node, ConfigDict) else ""
    outer = [(a, node_path(a)) for a in ancestors(node)]
    return _to_data(node, key, outer, len(outer))


def _find(placeholder: Inherit, scopes: list[tuple[Mapping, str]], skip: tuple[Any, Any]) -> tuple[Any, int]:
    """The raw value a placeholder stands for and the index of the scope that holds it."""
    name = placeholder.key
    for index in range(len(scopes) - 1, -1, -1):
        holder = scopes[index][0]
        if name in holder and not (holder is skip[0] and name == skip[1]):
            value = holder[name]
            if isinstance(value, Inherit):
                return _find(value, scopes[: index + 1], (holder, name))
            return value, index
    raise ConfigError(f"{placeholder!r} found no enclosing node with key {name!r}")


def _to_data(v: Any, key: str, scopes: list[tuple[Mapping, str]], inside: int,
             holder_key: Any = None) -> Any:
    """``inside``: index in ``scopes`` of the tree's own top node (scopes below it are outside)."""
    if isinstance(v, Inherit):
        skip = (scopes[-1][0], holder_key) if scopes else (None, None)
        try:
            value, index = _find(v, scopes, skip)
        except ConfigError as exc:
            raise ConfigError(f"cannot write {key or '(root)'}: {exc}") from None
        if index >= inside:
            return {_INHERIT: v.key}
        return _to_data(value, key, scopes[: index + 1], index + 1)  # said above the tree: its value
    if isinstance(v, Mapping):
        bad = [k for k in v if k in _MARKERS and not (k == TARGET and isinstance(v, LazyCall))]
        if bad:
            raise ConfigError(f"cannot write {key or '(root)'}: key {bad[0]!r} is reserved by the data form")
        inner = scopes + [(v, key)]
        out: dict[Any, Any] = {}
        if isinstance(v, LazyCall):
            module, qualname = reference(v[TARGET], key)
            out[TARGET] = f"{module}:{qualname}"
            if v.config_only:
                out[_ONLY] = list(v.config_only)
        for k, x in v.items():
            if k != TARGET:
                out[k] = _to_data(x, _sub(key, k), inner, inside, k)
        return out
    if type(v) in (list, tuple):
        items = [_to_data(x, _sub(key, i), scopes, inside) for i, x in enumerate(v)]
        return items if isinstance(v, list) else tuple(items)
    if isinstance(v, tuple):
        raise ConfigError(f"cannot write {key}: {type(v).__name__} {v!r} is a named tuple; use a node")
    if isinstance(v, float) or type(v) in _LITERALS:
        return v
    if inspect.isclass(v) or inspect.isroutine(v):
        module, qualname = reference(v, key)
        return {_REF: f"{module}:{qualname}"}
    raise ConfigError(f"cannot write {key}: {type(v).__name__} value {v!r} is not a literal, a config "
                      "node or an importable callable")


def model_config_entries(model: Any, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What makes a checkpoint self-contained: ``{"model_config": data, "class_names": names}``.

    Args:
        model: the resolved ``model`` node of a config (overrides applied).
        class_names: the class names; default the node's own ``class_names`` (placeholders
            followed), else ``None``.

    The model config leaves out the files of initial weights (:data:`INIT_WEIGHTS_KEYS`), which
    the checkpoint's state dict supersedes.
    """
    if class_names is None and isinstance(model, Mapping) and "class_names" in model:
        class_names = resolve_inherit(model, "class_names")
    names = None if class_names is None else [str(name) for name in class_names]
    return {MODEL_CONFIG_KEY: _without_init_weights(config_to_data(model)), CLASS_NAMES_KEY: names}


def _without_init_weights(data: Any) -> Any:
    """The data with every call's :data:`INIT_WEIGHTS_KEYS` set to None.

    A part built from a local file (``ResNet(weights="resnet50.pth")``) reads it only to start from;
    the checkpoint's state dict holds those weights since, and the file may not exist where the
    checkpoint is loaded.
    """
    if isinstance(data, dict):
        out = {k: _without_init_weights(v) for k, v in data.items()}
        if TARGET in out:
            out.update({k: None for k in INIT_WEIGHTS_KEYS if isinstance(out.get(k), str)})
        return out
    if type(data) in (list, tuple):
        return type(data)(_without_init_weights(v) for v in data)
    return data


# ---------------------------------------------------------------------------------------- from data


def _within(module: str, prefixes: Sequence[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def import_target(spec: Any, key: str, allowed_modules: Sequence[str] = DEFAULT_ALLOWED_MODULES,
                  denied_modules: Sequence[str] = DEFAULT_DENIED_MODULES) -> Any:
    """The class or function ``"module:qualname"`` names, if the allow-list permits it.

    Raises:
        UnsafeConfigError: malformed spec, module outside ``allowed_modules`` or inside
            ``denied_modules``, a dunder or module on the way, or an object that is not a class
            or function defined in an allowed module; the message names ``key`` and the spec.
    """
    def refuse(why: str) -> UnsafeConfigError:
        return UnsafeConfigError(f"{key or '(root)'}: refused target {spec!r}: {why}")

    if not isinstance(spec, str):
        raise refuse("not a 'module:qualname' string")
    module_name, sep, qualname = spec.partition(":")
    parts = qualname.split(".")
    if not sep or not module_name or not all(p.isidentifier() for p in parts + module_name.split(".")):
        raise refuse("not of the form 'module:qualname'")
    allowed = f"the modules a config's data may name are {', '.join(allowed_modules) or '(none)'}"
    if not _within(module_name, allowed_modules) or _within(module_name, denied_modules):
        denied = f" except {', '.join(denied_modules)}" if denied_modules else ""
        raise refuse(f"{allowed}{denied}")
    if any(p.startswith("__") for p in parts):
        raise refuse("dunder attributes are not followed")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in parts:
            obj = getattr(obj, part)
            if inspect.ismodule(obj):
                raise refuse(f"{part!r} is a module, not a class or function")
    except (ImportError, AttributeError) as exc:
        raise UnsafeConfigError(f"{key or '(root)'}: cannot import target {spec!r}: {exc}") from None
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
        raise refuse(f"it is a {type(obj).__name__}, not a class or function")
    home = getattr(obj, "__module__", None) or ""
    if not _within(home, allowed_modules) or _within(home, denied_modules):
        raise refuse(f"it is defined in {home or 'an unknown module'}; {allowed}")
    return obj


def config_from_data(data: Any, key: str = "model", *,
                     allowed_modules: Sequence[str] = DEFAULT_ALLOWED_MODULES,
                     denied_modules: Sequence[str] = DEFAULT_DENIED_MODULES) -> Any:
    """The config tree of data written by :func:`config_to_data`; no code of the data runs.

    Args:
        data: the data form.
        key: the key path of the tree, recorded on its nodes and used in messages.
        allowed_modules: module prefixes targets may come from.
        denied_modules: prefixes refused inside them.

    Raises:
        UnsafeConfigError: a target or reference outside the allow-list (see :func:`import_target`).
        ConfigError: malformed data, or a key the target does not accept (named).
    """
    def build(v: Any, path: str) -> Any:
        if isinstance(v, dict):
            if TARGET in v:
                target = import_target(v[TARGET], path, allowed_modules, denied_modules)
                only = v.get(_ONLY, ())
                if not isinstance(only, (list, tuple)) or not all(isinstance(k, str) for k in only):
                    raise ConfigError(f"{path}: {_ONLY} must be a list of key names, got {only!r}")
                kwargs = {k: build(x, _sub(path, k)) for k, x in v.items() if k not in (TARGET, _ONLY)}
                if not all(isinstance(k, str) for k in kwargs):
                    raise ConfigError(f"{path}: the arguments of a call must have string keys")
                return L(target, config_only=only)(**kwargs)
            if _INHERIT in v or _REF in v:
                (marker, value), = v.items() if len(v) == 1 else ((None, None),)
                if marker == _INHERIT and isinstance(value, str):
                    return Inherit(value)
                if marker == _REF:
                    return import_target(value, path, allowed_modules, denied_modules)
                raise ConfigError(f"{path}: malformed {_INHERIT} / {_REF} entry {v!r}")
            return ConfigDict({k: build(x, _sub(path, k)) for k, x in v.items()})
        if type(v) in (list, tuple):
            items = [build(x, _sub(path, i)) for i, x in enumerate(v)]
            return items if isinstance(v, list) else tuple(items)
        if isinstance(v, float) or type(v) in _LITERALS:
            return v
        raise ConfigError(f"{path}: {type(v).__name__} is not part of the config data form")

    return _to_config(build(data, key), key)
