"""Renamed keywords and moved attributes: old names keep working for one release, with a warning.

docs/conventions.md ("Names") lists each concept's one name and the aliases left behind. A
constructor keeps an old keyword in its signature (so that a config's keys are still checked
against it) and resolves it with :func:`renamed_keyword`; an attribute that moved to a sub-module
stays readable and writable on its old owner through :class:`MovedAttribute`. Both warn with a
``DeprecationWarning`` that names the old and the new spelling.
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

__all__ = ["MovedAttribute", "renamed_keyword"]

T = TypeVar("T")


def renamed_keyword(owner: str, old: str, old_value: T | None, new: str, new_value: T, default: T) -> T:
    """The value of a keyword argument renamed from ``old`` to ``new``.

    Args:
        owner: the class (or function) name, for the messages.
        old: the deprecated keyword.
        old_value: what the caller passed as ``old`` (None when not passed).
        new: the keyword's name now.
        new_value: what the caller passed as ``new`` (its default when not passed).
        default: ``new``'s default, to tell whether both were passed.

    Returns:
        ``old_value`` when it was passed (with a ``DeprecationWarning``), else ``new_value``.

    Raises:
        TypeError: both spellings were passed with different values.
    """
    if old_value is None:
        return new_value
    if new_value != default and new_value != old_value:
        raise TypeError(
            f"{owner}: got both {old}={old_value!r} and {new}={new_value!r}; {old} is the old name of {new}"
        )
    warnings.warn(f"{owner}: {old}= is deprecated, use {new}=", DeprecationWarning, stacklevel=3)
    return old_value


class MovedAttribute:
    """A class attribute that forwards an old attribute name to where the value lives now.

    Args:
        path: dotted path from the instance to the new attribute, e.g. ``"head.score_thresh"``.

    Example:
        >>> class YOLOv3(Detector):
        ...     max_detections = MovedAttribute("head.detections_per_img")
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner = owner.__name__
        self.name = name

    def _parent(self, obj: object) -> tuple[object, str]:
        *parents, leaf = self.path.split(".")
        for part in parents:
            obj = getattr(obj, part)
        return obj, leaf

    def _warn(self) -> None:
        warnings.warn(
            f"{self.owner}.{self.name} is deprecated, use {self.owner}.{self.path}", DeprecationWarning, stacklevel=3
        )

    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        self._warn()
        parent, leaf = self._parent(obj)
        return getattr(parent, leaf)

    def __set__(self, obj: object, value: Any) -> None:
        self._warn()
        parent, leaf = self._parent(obj)
        setattr(parent, leaf, value)
