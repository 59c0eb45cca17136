"""Lazy calls: ``L(target)(**kwargs)`` records a call as a :class:`LazyCall` node, not yet made.

A config tree is made of :class:`ConfigDict` (a ``dict`` whose keys are also attributes),
:class:`LazyCall` nodes (a ``ConfigDict`` with a ``_target_``), lists, tuples and literals, plus
:class:`Inherit` placeholders: a value said once at an enclosing node and taken from there when
the tree is built (:func:`detkit.config.instantiate`)::

    model = L(FasterRCNN)(
        num_classes=80,                                     # said once, at the detector
        roi_heads=L(RoIHeads)(
            num_classes=Inherit("num_classes"),             # -> 80, or whatever model.num_classes is
            box_predictor=L(FastRCNNPredictor)(num_classes=Inherit("num_classes"), ...),
        ), ...)

A node may hold keys its target does not take, for the placeholders below it, when they are
declared config-only: ``L(YOLOv3, config_only=["num_classes"])(num_classes=80, head=...)`` keeps
``num_classes`` in the config (``model.num_classes=20`` works as an override) and does not pass
it to ``YOLOv3``.

Keys are checked against the target's signature when a node is created and when an attribute is
set, so a typo fails at once naming the key, the target, the nearest valid names and (while a
config file is loading) the file and line. Keys that shadow a ``dict`` method (``items``,
``copy``...) must be read with ``node["items"]``.

Every node remembers (weakly) the node it was last placed in, so that a sub-tree built on its
own (``instantiate(cfg.dataloader.train)``) still finds the values its placeholders inherit from
above it.
"""

from __future__ import annotations

import difflib
import inspect
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigDict", "ConfigError", "ConfigKeyError", "Inherit", "InstantiationError", "L", "LazyCall",
]

TARGET = "_target_"
EXEC_MODULE = "__detkit_config__"  # __name__ of an executed config file: not importable
LOADING: list[Path] = []  # "configs" directories (or lone files) of the loads in progress
_PACKAGE_DIR = Path(__file__).resolve().parent


class ConfigError(Exception):
    """A config is malformed: unknown key, bad override, target that cannot be saved."""


class ConfigKeyError(ConfigError, AttributeError):
    """A key that the node or its target does not accept."""


class InstantiationError(ConfigError):
    """A target raised while being built; the original exception is the ``__cause__``."""


@dataclass(frozen=True)
class Inherit:
    """A value taken, when the tree is built, from the nearest enclosing node that has ``key``.

    The search starts at the node holding the placeholder (its other keys) and goes up through
    the nodes that contain it; the placeholder's own key is skipped, so
    ``num_classes=Inherit("num_classes")`` reads the parent's ``num_classes``. When the value
    found is a placeholder too, it is resolved from its own node in turn. The value is built like
    any other (a node gives a fresh object per placeholder).

    Args:
        key: the key to look up.
    """

    key: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise TypeError(f"Inherit() needs a key name, got {self.key!r}")

    def __repr__(self) -> str:
        return f"Inherit({self.key!r})"


def target_name(target: Any) -> str:
    """``module.qualname`` of a callable, for messages and ``format_config``."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    return f"{module}.{qualname}" if module else qualname


def accepted_names(target: Callable[..., Any]) -> list[str] | None:
    """Keyword names ``target`` accepts; None when it takes any (``**kwargs``, no signature)."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds]


def config_location() -> str | None:
    """``file:line`` of the innermost frame in a config file being loaded, if any."""
    if not LOADING:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<"):
            path = Path(filename).resolve()
            if path.parent != _PACKAGE_DIR and any(path == p or p in path.parents for p in LOADING):
                return f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def unknown_key(owner: str, key: str, valid: list[str], location: str | None) -> str:
    """Message for an unknown key: the owner, the key, the closest valid keys, the location."""
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    msg = f"{owner} has no key {key!r}"
    msg += f"; did you mean {', '.join(map(repr, close))}?" if close else "."
    msg += f" Valid keys: {', '.join(sorted(valid)) or '(none)'}."
    return f"{location}: {msg}" if location else msg


def node_path(node: dict) -> str:
    """The key path ``load_config`` recorded on a node (``"model.backbone"``), else ``""``."""
    return node.__dict__.get("_cfg_path", "")


def adopt(parent: dict, value: Any) -> None:
    """Record ``parent`` as the enclosing node of ``value`` (and of the nodes in its lists)."""
    if isinstance(value, ConfigDict):
        value.__dict__["_cfg_parent"] = weakref.ref(parent)
    elif type(value) in (list, tuple):
        for item in value:
            adopt(parent, item)


def ancestors(node: Any) -> list[dict]:
    """The nodes enclosing ``node``, outermost first, as far as they are still alive."""
    chain: list[dict] = []
    seen = {id(node)}
    ref = node.__dict__.get("_cfg_parent") if isinstance(node, ConfigDict) else None
    while ref is not None:
        parent = ref()
        if parent is None or id(parent) in seen:
            break
        seen.add(id(parent))
        chain.append(parent)
        ref = parent.__dict__.get("_cfg_parent") if isinstance(parent, ConfigDict) else None
    return chain[::-1]


class ConfigDict(dict):
    """A ``dict`` whose string keys are also attributes (``cfg.train.max_iter``)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            msg = unknown_key(self._describe(), name, self._valid_keys(), config_location())
            raise ConfigKeyError(msg) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        adopt(self, value)

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            msg = unknown_key(self._describe(), name, self._valid_keys(), config_location())
            raise ConfigKeyError(msg) from None

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # The node's attributes (path, config-only keys) are restored before its items, which go
        # through __setitem__ (checked, and linked to the copy); the parent link is a weak
        # reference, not copied: the copy's items point to the copy, the copy itself to nothing.
        state = {k: v for k, v in self.__dict__.items() if k != "_cfg_parent"}
        return _rebuild, (type(self), state, list(self.items()))

    def _describe(self) -> str:
        return f"config {node_path(self) or '(root)'}"

    def _valid_keys(self) -> list[str]:
        return [k for k in self if isinstance(k, str)]


def _rebuild(cls: type[ConfigDict], state: dict[str, Any], items: list[tuple[Any, Any]]) -> ConfigDict:
    """Inverse of ``ConfigDict.__reduce_ex__`` (copy and pickle)."""
    node = cls.__new__(cls)
    node.__dict__.update(state)
    for key, value in items:
        node[key] = value
    return node


class LazyCall(ConfigDict):
    """A recorded call: ``_target_`` (the callable) plus its keyword arguments, not yet made.

    Create it with ``L(target)(**kwargs)``. Setting a key the target does not accept (and that
    is not one of the node's :attr:`config_only` keys) raises :class:`ConfigKeyError`.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if key == TARGET:
            if not callable(value):
                raise ConfigError(f"_target_ must be a callable, got {value!r}")
        elif TARGET in self:  # absent only while copy/pickle rebuilds the node
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

    @property
    def config_only(self) -> tuple[str, ...]:
        """Keys held for the placeholders below and not passed to the target."""
        return self.__dict__.get("_config_only", ())

    def _check_key(self, key: str, location: str | None = None) -> None:
        if key in self.config_only:
            return
        valid = accepted_names(self[TARGET])
        if valid is not None and key not in valid:
            location = location or config_location()
            raise ConfigKeyError(unknown_key(self._describe(), key, valid + list(self.config_only), location))

    def _valid_keys(self) -> list[str]:
        valid = accepted_names(self[TARGET]) if TARGET in self else None
        return sorted(set(valid or ()) | set(self.config_only) | {k for k in self if k != TARGET})

    def _describe(self) -> str:
        path = node_path(self)
        return f"{target_name(self.get(TARGET))}" + (f" (at {path})" if path else "")


def L(  # noqa: N802 (the name is the API)
    target: Callable[..., Any], *, config_only: Iterable[str] = ()
) -> Callable[..., LazyCall]:
    """Record a call to ``target``: ``L(ResNet)(depth=50)`` returns a :class:`LazyCall` node.

    Args:
        target: an importable class or function; the callable itself, never a string.
        config_only: keys the node may hold although ``target`` does not take them; they are
            visible to the :class:`Inherit` placeholders below and are not passed to ``target``
            (e.g. ``num_classes`` on a detector that reads it from its head).

    Returns:
        A function taking keyword arguments only and returning the node. Keywords are checked
        against ``inspect.signature(target)`` at once (anything goes when it takes ``**kwargs``).
    """
    if not callable(target) or isinstance(target, str):
        raise TypeError(f"L() needs a callable target (a class or function), got {target!r}")
    extra = tuple(config_only)
    if isinstance(config_only, str) or not all(isinstance(k, str) and k.isidentifier() for k in extra):
        raise TypeError(f"L(config_only=...) takes a list of key names, got {config_only!r}")

    def record(*args: Any, **kwargs: Any) -> LazyCall:
        if args:
            raise TypeError(f"L({target_name(target)})() takes keyword arguments only")
        node = LazyCall()
        dict.__setitem__(node, TARGET, target)
        if extra:
            node.__dict__["_config_only"] = extra
        location = config_location()
        for key, value in kwargs.items():
            node._check_key(key, location)
            dict.__setitem__(node, key, value)
            adopt(node, value)
        return node

    return record
