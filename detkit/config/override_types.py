"""Whether an override's value fits the value it replaces: ``optimizer.lr=fast`` fails at load time.

A command-line override is parsed as a Python literal (else kept as a string), so a typo such as
``optimizer.lr=fast`` or ``train.checkpoint_period='5'`` would otherwise reach the code that uses
it as a string and fail deep inside it (or not at all). :func:`check_override_type` compares the
parsed value with the value it replaces (the config's, or the target's default for an argument
the config leaves unset):

- ``None`` may replace anything and anything may replace ``None``; a sub-tree (a dict, an
  ``L()`` node, an ``Inherit``) may be replaced by anything (``train.ema=False``,
  ``model.preprocess=None``), and a dict may replace anything;
- an ``int`` may replace a ``float``, never the reverse;
- a ``bool`` never replaces a number and a number never replaces a ``bool``;
- a ``str`` never replaces a number or a ``bool``, nor the reverse (quote a name that looks like
  a number: ``key="'2024'"``);
- a list and a tuple replace each other, and neither replaces (or is replaced by) a single value.

Where a value breaks these rules but the target's annotation for that argument admits it (a
``min_size: int | Sequence[int]`` given a tuple), it is accepted: the annotation is the
authority where there is one.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from detkit.config.lazy import ConfigError

__all__ = ["OverrideTypeError", "annotation_of", "check_override_type", "default_of", "register_section_types"]

_SEQUENCE_ORIGINS = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence,
                     collections.abc.Iterable, collections.abc.Collection)


class OverrideTypeError(ConfigError, ValueError):
    """An override whose value's type does not fit the value it replaces (one line, naming the
    key, the expected type, the config's value and the given one)."""


def _kind(value: Any) -> str | None:
    """The rule class of a value: ``bool``, ``int``, ``float``, ``str``, ``sequence``, or None for
    values the rules do not constrain (None, dicts, nodes, placeholders, other objects)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if type(value) in (list, tuple):
        return "sequence"
    return None


def _fits(new: Any, current: Any) -> bool:
    have, want = _kind(new), _kind(current)
    if have is None or want is None or isinstance(new, dict):
        return True
    if want == "float":
        return have in ("int", "float")
    return have == want


def _callable_of(target: Any) -> Callable[..., Any] | None:
    if inspect.isclass(target):
        return target.__init__
    return target if callable(target) else None


def annotation_of(target: Any, key: str) -> Any:
    """The resolved type annotation of argument ``key`` of ``target`` (``inspect.Parameter.empty``
    when there is none or it cannot be resolved)."""
    function = _callable_of(target)
    if function is None:
        return inspect.Parameter.empty
    try:
        return typing.get_type_hints(function).get(key, inspect.Parameter.empty)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve says nothing
        return inspect.Parameter.empty


def default_of(target: Any, key: str) -> Any:
    """The default of argument ``key`` of ``target`` (``inspect.Parameter.empty`` when none)."""
    try:
        parameter = inspect.signature(target).parameters.get(key)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if parameter is None else parameter.default


def _admits(hint: Any, value: Any) -> bool | None:
    """Whether annotation ``hint`` admits ``value`` (None: cannot tell)."""
    if hint is inspect.Parameter.empty:
        return None
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        answers = [_admits(arg, value) for arg in typing.get_args(hint)]
        return True if True in answers else (None if None in answers else False)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in _SEQUENCE_ORIGINS:
        return type(value) in (list, tuple)
    return None


# Type annotations of the keys of plain-dict sections that a layer above describes with a schema
# (the engine registers ``train`` from its TrainSettings dataclass): an override of such a key is
# also accepted when the annotation admits it (``train.amp='bf16'`` where the config has False).
_SECTION_TYPES: dict[str, Mapping[str, Any]] = {}


def register_section_types(section: str, annotations: Mapping[str, Any]) -> None:
    """Declare the types of the keys of top-level section ``section`` (``{key: annotation}``)."""
    _SECTION_TYPES[section] = dict(annotations)


def _section_annotation(key: str) -> Any:
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in _SECTION_TYPES:
        return _SECTION_TYPES[parts[0]].get(parts[1], inspect.Parameter.empty)
    return inspect.Parameter.empty


def _type_word(value: Any) -> str:
    return {"sequence": "a list or tuple"}.get(_kind(value) or "", type(value).__name__)


def check_override_type(key: str, new: Any, current: Any, target: Any = None) -> None:
    """Raise when the override ``key=new`` does not fit the value it replaces.

    Args:
        key: Its key path.
        new: The parsed value.
        current: The value it replaces (``inspect.Parameter.empty`` when there is none).
        target: The callable of the ``L()`` node that holds ``key``, if any (its annotation for
            the argument may admit a value the rules refuse).

    Raises:
        OverrideTypeError: ``"override optimizer.lr='fast': expected float (the config has 0.01),
            got str"``.
    """
    if current is inspect.Parameter.empty or new is None or current is None or _fits(new, current):
        return
    name = key.rsplit(".", 1)[-1]
    if target is not None and _admits(annotation_of(target, name), new):
        return
    if target is None and _admits(_section_annotation(key), new):
        return
    raise OverrideTypeError(f"override {key}={new!r}: expected {_type_word(current)} (the config has {current!r}), "
                            f"got {_type_word(new)}")
