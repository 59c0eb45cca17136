"""``instantiate()``: build the objects a config tree describes, resolving :class:`Inherit`.

Building goes depth first; every call gives fresh objects. A placeholder ``Inherit(key)`` is
looked up in the nodes that enclose it, innermost first: those on the way down from the node
being built, then (for a sub-tree built on its own, ``instantiate(cfg.dataloader.train)``) the
nodes it was placed in when the config was loaded or assigned.

One convention of detkit's glossary is checked here, where every value is known: a node that has
both ``num_classes`` and ``class_names`` (not ``None``) must give as many names as classes; the
error names both keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detkit.config.lazy import (
    TARGET, ConfigDict, Inherit, InstantiationError, LazyCall, ancestors, node_path, target_name,
)

__all__ = ["instantiate", "resolve_inherit"]

_Scopes = list[tuple[Mapping, str]]  # enclosing nodes with their key paths, outermost first


def instantiate(cfg: Any, key: str | None = None, *, defaults: Mapping[str, Any] | None = None) -> Any:
    """Build the objects a config tree describes, depth first; a fresh object on every call.

    Args:
        cfg: a :class:`LazyCall` node, or a dict, list or tuple holding nodes, or a plain value
            (returned as it is). Dicts come back as plain ``dict``.
        key: the key path of ``cfg`` used in error messages; defaults to the path ``load_config``
            recorded on the node (e.g. ``"model"``).
        defaults: keyword arguments added to the call of ``cfg`` (a :class:`LazyCall`) where the
            node does not set them, e.g. the model an engine hands to an optimiser node.

    Raises:
        InstantiationError: a target raised (the message names the key path being built and the
            target, the original exception is chained as ``__cause__``), a placeholder found no
            value, or ``num_classes`` and ``class_names`` of a node disagree.
    """
    if key is None:
        key = node_path(cfg) if isinstance(cfg, ConfigDict) else ""
    scopes: _Scopes = [(node, node_path(node)) for node in ancestors(cfg)]
    if defaults and not isinstance(cfg, LazyCall):
        raise TypeError(f"config key {key!r} must be an L(...) node to take {sorted(defaults)}, "
                        f"got {type(cfg).__name__}")
    return _build(cfg, key, scopes, dict(defaults or {}))


def resolve_inherit(node: Mapping, key: str) -> Any:
    """The value ``node[key]`` stands for, following :class:`Inherit` placeholders upwards
    (built, when it is a node). Raises :class:`InstantiationError` when nothing provides it."""
    scopes: _Scopes = [(n, node_path(n)) for n in ancestors(node)] + [(node, node_path(node))]
    return _value(node[key], scopes, key)


def _sub(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _value(value: Any, scopes: _Scopes, key: object) -> Any:
    """Build ``value``, held under ``key`` by the innermost node of ``scopes``."""
    holder, path = scopes[-1]
    if isinstance(value, Inherit):
        return _resolve(value, scopes, skip=(holder, key), where=_sub(path, key))
    return _build(value, _sub(path, key), scopes)


def _resolve(placeholder: Inherit, scopes: _Scopes, skip: tuple[Mapping, object], where: str) -> Any:
    name = placeholder.key
    for index in range(len(scopes) - 1, -1, -1):
        node, _ = scopes[index]
        if name in node and not (node is skip[0] and name == skip[1]):
            return _value(node[name], scopes[: index + 1], name)
    looked = ", ".join(path or "(root)" for _, path in reversed(scopes)) or "(nothing)"
    raise InstantiationError(f"{where or '(root)'}: {placeholder!r} found no enclosing node with key "
                             f"{name!r} (looked in {looked}); set {name} on an enclosing node")


def _check_class_count(kwargs: Mapping[str, Any], path: str) -> None:
    names, count = kwargs.get("class_names"), kwargs.get("num_classes")
    if names is None or count is None or isinstance(names, str):
        return
    try:
        given = len(names)
    except TypeError:
        return
    if given != count:
        raise InstantiationError(
            f"{_sub(path, 'num_classes')}={count} but {_sub(path, 'class_names')} has {given} names; "
            "give as many names as classes (or class_names=None)"
        )


def _build(cfg: Any, path: str, scopes: _Scopes, defaults: dict[str, Any] | None = None) -> Any:
    if isinstance(cfg, LazyCall):
        target = cfg[TARGET]
        inner = scopes + [(cfg, path)]
        values = {k: _value(v, inner, k) for k, v in cfg.items() if k != TARGET}
        _check_class_count(values, path)
        kwargs = {k: v for k, v in values.items() if k not in cfg.config_only}
        for name, value in (defaults or {}).items():
            kwargs.setdefault(name, value)
        try:
            return target(**kwargs)
        except InstantiationError:
            raise
        except Exception as exc:
            where = path or "(root)"
            raise InstantiationError(
                f"while building {where} ({target_name(target)}): {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(cfg, Mapping):
        inner = scopes + [(cfg, path)]
        return {k: _value(v, inner, k) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        # Items of a list are held by the node that holds the list (no key of their own).
        items = [_build(v, _sub(path, i), scopes) if not isinstance(v, Inherit)
                 else _resolve(v, scopes, skip=({}, None), where=_sub(path, i)) for i, v in enumerate(cfg)]
        if isinstance(cfg, list):
            return items
        return type(cfg)(*items) if hasattr(cfg, "_fields") else tuple(items)  # namedtuple
    if isinstance(cfg, Inherit):
        return _resolve(cfg, scopes, skip=({}, None), where=path)
    return cfg
