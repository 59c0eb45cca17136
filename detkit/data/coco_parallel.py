"""A large COCO json parsed in three forked children at once, its annotations split between two.

Parsing dominates the load of a COCO-train-sized file (300 MB, most of it the annotations' polygon
numbers), and one parser uses one core. :func:`parse_coco_in_parts` cuts the text at a boundary
between two annotation records near the middle of the file; forked children
(:mod:`detkit.data.forked`) parse the pieces at once and turn the records into columns
(:class:`~detkit.data.coco_columns.AnnotationColumns`, and
:class:`~detkit.data.coco_columns.ImageColumns` for the images); the parent joins the columns. The
parsed Python objects never enter the parent.

The cut is proven, never guessed. With ``a`` the ``[`` after the first text ``"annotations":``
and ``s`` the ``}`` of a ``},{`` after the middle:

* the head child parses ``text[:a] + '[]}'``: a valid object whose last key is ``"annotations"``
  with ``[]`` means the ``[`` at ``a`` is json structure (not inside a string) and opens the
  top-level annotations list;
* the first child parses ``text[a:s+1] + ']'`` standing alone: as the list at ``a`` is structure,
  a parser starting there reads the same tokens as on the whole text, so success means ``s`` ends
  a record of that same list and ``s + 1`` is its separator;
* the second child parses ``'{"":[' + text[s+2:]``: a parser there is in the same state as on
  the whole text (a list element expected, inside the top-level object), so it reads the
  remaining records, then the keys after the list (the text holds no ``"":`` key, checked, so
  ``""`` is ours; a second ``"annotations"`` key refuses the split).

The three parse exactly when the whole text does, and the joined result is what parsing it whole
gives (keys after the list win over earlier ones, as they do in one parse). Anything else (no
such boundary, a refusal) answers ``None`` and the caller parses the file in one piece; records
the columns refuse answer :data:`REFUSED` (the record loop reads the file and words any error).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .coco_columns import (
    AnnotationColumns,
    annotation_columns,
    image_columns,
    list_of_dicts,
)
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


def _annotations_list(path: Path, stop: int) -> int | None:
    """Where the first ``"annotations": [`` text before ``stop`` has its ``[`` (``None``: none)."""
    overlap, chunk = 256, 1 << 22
    with path.open("rb") as file:
        for begin in range(0, stop, chunk - overlap):
            file.seek(begin)
            match = _ANNOTATIONS_KEY.search(file.read(min(chunk, stop - begin)))
            if match is not None:
                return begin + match.end() - 1
    return None


def _with_image_columns(document: dict, image_dir: Path, source: str) -> dict | str:
    """``document`` with a list of plain ``images`` records as :class:`ImageColumns`
    (:data:`REFUSED` when the columns refuse one)."""
    images = list_of_dicts(document, "images")
    if images is not None:
        columns = image_columns(images, image_dir, source)
        if columns is None:
            return REFUSED
        document["images"] = columns
    return document


def _head_part(path: Path, stop: int, image_dir: Path, source: str) -> Any:
    """``(a, the document's keys before the annotations)``, ``a`` proven to be the ``[`` of the
    top-level annotations list."""
    start = _annotations_list(path, stop)
    if start is None:
        return None
    before = orjson.loads(_pread(path, 0, start) + b"[]}")
    if type(before) is not dict or not before or list(before)[-1] != "annotations" or before["annotations"] != []:
        return None
    del before["annotations"]
    before = _with_image_columns(before, image_dir, source)
    return REFUSED if before == REFUSED else (start, before)


def _first_part(path: Path, stop: int, with_masks: bool) -> Any:
    """``(a, columns of the records from a to the cut)``: the records before the cut, parsed as
    a list standing alone (valid when :func:`_head_part` proves ``a``)."""
    start = _annotations_list(path, stop)
    if start is None:
        return None
    records = orjson.loads(_pread(path, start, stop + 1) + b"]")
    if type(records) is not list or not all(type(record) is dict for record in records):
        return REFUSED
    columns = annotation_columns(records, with_masks)
    return REFUSED if columns is None else (start, columns)


def _second_part(path: Path, start: int, with_masks: bool, image_dir: Path, source: str) -> Any:
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
    after = _with_image_columns(after, image_dir, source)
    return REFUSED if columns is None or after == REFUSED else (after, columns)


def parse_coco_in_parts(path: Path, with_masks: bool, image_dir: Path, source: str) -> dict[str, Any] | str | None:
    """The document at ``path`` with its ``annotations`` as one
    :class:`~detkit.data.coco_columns.AnnotationColumns` and its ``images`` (a list of plain
    records) as :class:`~detkit.data.coco_columns.ImageColumns` (paths relative to ``image_dir``,
    records named after ``source``), parsed in three children at once.

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
    second = start_forked(lambda: _second_part(path, cut[1], with_masks, image_dir, source))
    if second is None:
        return None
    first = start_forked(lambda: _first_part(path, cut[0], with_masks))
    head = start_forked(lambda: _head_part(path, cut[0], image_dir, source))
    parts = [call.result() if call is not None else None for call in (head, first)] + [second.result()]
    if parts[0] is None or parts[1] is None:  # the cut is not proven: the other parts may hold anything
        return None
    if REFUSED in parts:
        return REFUSED
    if parts[2] is None or parts[0][0] != parts[1][0]:
        return None
    (_, before), (_, head_columns), (after, tail_columns) = parts
    document = {**before, **after}  # later keys win, as in one parse
    document["annotations"] = AnnotationColumns.concatenate([head_columns, tail_columns])
    return document
