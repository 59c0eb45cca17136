"""Reading annotation files, with errors that name the file, the line and the item.

Every reader in :mod:`detkit.data` goes through these helpers, so a malformed annotation file
stops the dataset with one line (a :class:`~detkit.data.validation.DatasetError`, a
``ValueError``) that says which file, which line or record, and what was expected there, instead
of a ``KeyError`` or ``could not convert string to float`` from deep inside a reader:

* :func:`read_json`, :func:`read_xml`, :func:`read_text_lines`: the file cannot be parsed at all
  (truncated, not UTF-8, not json / xml); the message gives the parser's line and column;
* :func:`require_list_of_dicts`, :func:`require_keys`: a json document or record without the
  structure its format requires (``"images"`` missing, a record that is not an object);
* :func:`parse_number`, :func:`parse_box`: a field that is not a finite number (``"abc"``,
  ``null``, ``NaN``), a box that is not four numbers.

A missing file is left to the caller's ``FileNotFoundError``, which already names the path.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .validation import DatasetError

__all__ = [
    "parse_box",
    "parse_number",
    "read_json",
    "read_text_lines",
    "read_xml",
    "require_keys",
    "require_list_of_dicts",
]


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting a bad value in one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: {what} is not UTF-8 text (byte {error.start}: {error.reason})") from None


def read_text_lines(path: str | Path, what: str = "annotation file") -> list[str]:
    """The lines of a UTF-8 text file (line ``k`` of the file is item ``k - 1``).

    Raises:
        FileNotFoundError: the file does not exist (named).
        DatasetError: the file is not UTF-8 text (named, with the byte offset).
    """
    return _read_text(Path(path), what).splitlines()


def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """Parse a json file.

    Raises:
        FileNotFoundError: the file does not exist (named).
        DatasetError: the file is not UTF-8 or not valid json, e.g. cut short by an interrupted
            download (named, with the line and column where parsing stopped).
    """
    path = Path(path)
    text = _read_text(path, what)
    if not text.strip():
        raise DatasetError(f"{path}: {what} is empty (expected json)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        ends = " (the file ends there: truncated?)" if error.pos >= len(text.rstrip()) else ""
        raise DatasetError(
            f"{path}: not valid json: {error.msg} at line {error.lineno}, column {error.colno}{ends}"
        ) from None
    except RecursionError:
        raise DatasetError(f"{path}: json nested too deeply to parse") from None


def read_xml(path: str | Path, what: str = "annotation file") -> ET.Element:
    """Parse an xml file and return its root element.

    Raises:
        FileNotFoundError: the file does not exist (named).
        DatasetError: not well-formed xml, e.g. truncated (named, with line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        line, column = error.position
        raise DatasetError(f"{path}: not well-formed xml at line {line}, column {column} "
                           f"({str(error).split(':')[0]}; truncated?)") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read {what}: {error}") from None


def require_list_of_dicts(document: Any, key: str, where: str) -> list[dict]:
    """``document[key]``, checked to be a list of json objects.

    Args:
        document: the parsed json (must be an object).
        key: the required top-level key, e.g. ``"images"``.
        where: names the file in messages.

    Raises:
        DatasetError: the document is not an object, has no ``key``, ``key`` is not a list, or an
            item is not an object (its index named).
    """
    if not isinstance(document, Mapping):
        raise DatasetError(f"{where}: expected a json object with {key!r}, got a {type(document).__name__}")
    if key not in document:
        raise DatasetError(f"{where}: no {key!r} list (has keys {sorted(document)})")
    items = document[key]
    if not isinstance(items, list):
        raise DatasetError(f"{where}: {key!r} must be a list, got a {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DatasetError(f"{where}: {key}[{index}] must be a json object, got {_short(item)}")
    return items


def require_keys(record: Mapping[str, Any], keys: Iterable[str], what: str) -> None:
    """Raise a :class:`DatasetError` naming ``what`` (file and record) and the missing keys."""
    missing = [key for key in keys if key not in record]
    if missing:
        raise DatasetError(f"{what}: missing {', '.join(repr(k) for k in missing)} (has {sorted(record)})")


def parse_number(value: Any, field: str, what: str, *, integer: bool = False, positive: bool = False) -> float:
    """A json value or a text field as a finite number.

    Args:
        value: a json number or a string such as ``"12.5"`` (xml and txt fields).
        field: the field's name in the message (``"xmin"``, ``"bbox"``, ``"line 3 field 2"``).
        what: the file and record, e.g. ``"a.xml: object 2"``.
        integer: the number must be integral (``3`` or ``"3"``; ``"3.0"`` is accepted too).
        positive: the number must be ``> 0`` (image sizes).

    Returns:
        The value as a float (integral when ``integer``).

    Raises:
        DatasetError: not a number (booleans and ``null`` included), not finite, not integral
            or not positive; the message quotes the value.
    """
    if isinstance(value, bool) or value is None:
        number = None
    elif isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    else:
        number = None
    if number is None:
        raise DatasetError(f"{what}: {field} must be a number, got {_short(value)}")
    if not math.isfinite(number):
        raise DatasetError(f"{what}: {field} must be a finite number, got {_short(value)}")
    if integer and not number.is_integer():
        raise DatasetError(f"{what}: {field} must be an integer, got {_short(value)}")
    if positive and number <= 0:
        raise DatasetError(f"{what}: {field} must be > 0, got {_short(value)}")
    return number


def parse_box(value: Any, field: str, what: str, layout: str) -> list[float]:
    """Four finite numbers, e.g. a COCO ``bbox``.

    Args:
        value: the json value.
        field: its name in the message (``"bbox"``).
        what: the file and record.
        layout: the four names, for the message (``"[x, y, width, height]"``).

    Raises:
        DatasetError: not a list of exactly four finite numbers (the value quoted).
    """
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        raise DatasetError(f"{what}: {field} must be 4 numbers {layout}, got {_short(value)}")
    try:
        return [parse_number(v, field, what) for v in value]
    except DatasetError:
        raise DatasetError(f"{what}: {field} must be 4 finite numbers {layout}, got {_short(value)}") from None
