"""A large COCO json parsed in two forked children at once, its annotations split between them.

Parsing dominates the load of a COCO-train-sized file (300 MB, most of it the annotations' polygon
numbers), and one parser uses one core. :func:`parse_coco_in_parts` cuts the text into two
documents at a boundary between two annotation records near the middle of the file, and two
children (:mod:`detkit.data.forked`) each parse one and turn its annotations into
:class:`~detkit.data.coco_columns.AnnotationColumns`; the parent joins the columns. The parsed
Python objects never enter the parent.

The cut is proven, never guessed. With ``a`` the ``[`` after the text ``"annotations":`` and ``s``
the ``}`` of a ``},{`` near the middle, the first child parses

* ``text[:a] + '[]}'``: a valid object whose last key is ``"annotations"`` with ``[]`` means the
  ``[`` at ``a`` is json structure (not inside a string) and opens the top-level annotations list;
* ``text[a:s+1] + ']'`` standalone: as the list at ``a`` is structure, a parser starting there
  reads the same tokens as on the whole text, so success means ``s`` ends a record of that same
  list and ``s + 1`` is its separator;

and the second ``'{"":[' + text[s+2:]``: a parser there is in the same state as on the whole
text (a list element expected, inside the top-level object), so it reads the remaining records,
then the keys after the list (the text holds no ``"":`` key, checked, so ``""`` is ours; a
second ``"annotations"`` key refuses the split). The three parse exactly when the whole text
does, and the joined result is what parsing it whole gives (keys after the list win over
earlier ones, as they do in one parse). Anything else (no such boundary, pretty-printed text
without it, a refusal) answers ``None`` and the caller parses the file in one piece.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .coco_columns import AnnotationColumns, annotation_columns
from .forked import start_forked

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    orjson = None

__all__ = ["REFUSED", "parse_coco_in_parts"]

REFUSED = "refused"  # the columns refuse a record: the record loop must read the file

_ANNOTATIONS_KEY = re.compile(rb'"annotations"\s*:\s*\[')
_RECORD_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
_EMPTY_KEY = re.compile(rb'""\s*:')
_WINDOW = 1 << 20  # bytes searched for a record boundary after the middle


def _pread(path: Path, start: int, stop: int | None = None) -> bytes:
    with path.open("rb") as file:
        file.seek(start)
        return file.read() if stop is None else file.read(stop - start)


def _boundary(path: Path, size: int) -> tuple[int, int] | None:
    """``(s, t)``: the ``}`` ending a record and the ``{`` starting the next, after the middle."""
    middle = size // 2
    match = _RECORD_BOUNDARY.search(_pread(path, middle, min(size, middle + _WINDOW)))
    return None if match is None else (middle + match.start(), middle + match.end() - 1)


def _first_part(path: Path, stop: int, with_masks: bool) -> Any:
    """``(the document's keys before the annotations, columns of the records before the cut)``."""
    head = _pread(path, 0, stop + 1)
    match = _ANNOTATIONS_KEY.search(head)
    if match is None:
        return None
    start = match.end() - 1
    before = orjson.loads(head[:start] + b"[]}")
    if type(before) is not dict or not before or list(before)[-1] != "annotations" or before["annotations"] != []:
        return None
    records = orjson.loads(memoryview(head)[start:].tobytes() + b"]")
    del head
    if type(records) is not list or not all(type(record) is dict for record in records):
        return REFUSED
    columns = annotation_columns(records, with_masks)
    if columns is None:
        return REFUSED
    del before["annotations"]
    return before, columns


def _second_part(path: Path, start: int, with_masks: bool) -> Any:
    """``(the document's keys after the annotations, columns of the records after the cut)``."""
    tail = _pread(path, start)
    if _EMPTY_KEY.search(tail):
        return None
    after = orjson.loads(b'{"":[' + tail)
    del tail
    if type(after) is not dict or "annotations" in after or type(after.get("")) is not list:
        return None
    records = after.pop("")
    if not all(type(record) is dict for record in records):
        return REFUSED
    columns = annotation_columns(records, with_masks)
    return REFUSED if columns is None else (after, columns)


def parse_coco_in_parts(path: Path, with_masks: bool) -> dict[str, Any] | str | None:
    """The document at ``path`` with its ``annotations`` as one
    :class:`~detkit.data.coco_columns.AnnotationColumns`, parsed in two children at once.

    Returns:
        The document (a dict); :data:`REFUSED` when a record is not of the form the columns take
        (the record loop must read the file); ``None`` when the text cannot be split as the
        module docstring says, or forking is not available (parse it in one piece).
    """
    if orjson is None:
        return None
    size = path.stat().st_size
    cut = _boundary(path, size)
    if cut is None:
        return None
    second = start_forked(lambda: _second_part(path, cut[1], with_masks))
    if second is None:
        return None
    first = start_forked(lambda: _first_part(path, cut[0], with_masks))
    parts = [first.result() if first is not None else None, second.result()]
    if parts[0] is None:  # the cut is not proven: the second part's records may not be annotations
        return None
    if REFUSED in parts:
        return REFUSED
    if parts[1] is None:
        return None
    (before, head_columns), (after, tail_columns) = parts
    document = {**before, **after}  # later keys win, as in one parse
    document["annotations"] = AnnotationColumns.concatenate([head_columns, tail_columns])
    return document

