"""Files the converters share: class-name lists, image copies or links, and occupied destinations.

* :func:`read_class_names` reads a class list: a text file with one name per line (YOLO's
  ``classes.txt`` / ``*.names``, blank lines skipped) or a yaml / json file with a ``names`` list
  or ``{index: name}`` mapping (ultralytics' ``data.yaml``);
* :func:`write_class_names` writes ``classes.txt`` for the formats that have no class list of
  their own (VOC, YOLO), refusing to change the list another split was written with;
* :func:`place_image` copies or symlinks an image into the destination;
* :func:`require_free` refuses to write over a split that is already there (``overwrite``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..parsing import read_json, read_text_lines
from ..validation import DatasetError
from .annotations import ConversionError

__all__ = ["CLASSES_FILE", "ImageMode", "place_image", "read_class_names", "require_free", "write_class_names",
           "yaml_string"]

CLASSES_FILE = "classes.txt"  # one class name per line, in label order

ImageMode = Literal["copy", "link"]


def _names_from_document(document: object, path: Path) -> list[str]:
    names = document.get("names") if isinstance(document, dict) else document
    if isinstance(names, dict):  # ultralytics: {0: name, 1: name, ...}
        try:
            order = sorted(names, key=int)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: 'names' keys must be class indices 0, 1, ..., got {sorted(names, key=str)}")\
                from None
        if [int(key) for key in order] != list(range(len(order))):
            raise DatasetError(f"{path}: 'names' indices must be 0 .. {len(order) - 1}, got {order}")
        names = [names[key] for key in order]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise DatasetError(f"{path}: expected a 'names' list of strings (or {{index: name}}), got {names!r:.80}")
    return names


def read_class_names(path: str | Path) -> list[str]:
    """A class list from a file, in label order.

    Args:
        path: ``.txt`` / ``.names`` (one name per line, surrounding spaces stripped, blank lines
            skipped), ``.yaml`` / ``.yml`` or ``.json`` (a ``names`` list or ``{index: name}``
            mapping, or a bare list).

    Raises:
        FileNotFoundError: no such file.
        DatasetError: no names, duplicate names, or a yaml / json file without a ``names`` list.
    """
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"class names file not found: {path}")
        try:
            import yaml
        except ImportError:
            raise DatasetError(f"{path}: reading yaml needs PyYAML (pip install pyyaml); or give the names as "
                               "a text file, one per line") from None
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise DatasetError(f"{path}: not valid yaml: {str(error).splitlines()[0]}") from None
        names = _names_from_document(document, path)
    elif path.suffix.lower() == ".json":
        names = _names_from_document(read_json(path, "class names file"), path)
    else:
        names = [line.strip() for line in read_text_lines(path, "class names file") if line.strip()]
    if not names:
        raise DatasetError(f"{path}: no class names in the file")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(f"{path}: duplicate class names {repeated} (labels would be ambiguous)")
    return names


def write_class_names(out_dir: Path, class_names: Sequence[str], overwrite: bool) -> Path:
    """Write ``out_dir/classes.txt``; an existing one must list the same names (other splits use it).

    Raises:
        ConversionError: the file exists with other names and ``overwrite`` is false.
    """
    path = out_dir / CLASSES_FILE
    bad = [name for name in class_names if "\n" in name or name != name.strip() or not name]
    if bad:
        raise ConversionError(f"class names {bad} cannot be written one per line to {path} (empty, "
                              "surrounding spaces or a line break)")
    if path.is_file() and not overwrite:
        existing = read_class_names(path)
        if existing != list(class_names):
            raise ConversionError(f"{path} lists the classes {existing} but this split has {list(class_names)}; "
                                  "convert every split with the same --names, or pass --overwrite")
    path.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
    return path


def require_free(paths: Sequence[Path], overwrite: bool, what: str) -> None:
    """Refuse to write a split whose files are already there (unless ``overwrite``).

    Args:
        paths: the split's annotation file or folder(s) (a folder counts when it is not empty).
        overwrite: allow it.
        what: the split, for the message (``"split 'train'"``).

    Raises:
        ConversionError: one of ``paths`` exists (a non-empty folder, or a file).
    """
    if overwrite:
        return
    for path in paths:
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            raise ConversionError(f"{path} already holds {what}; choose another destination or pass --overwrite")


def place_image(source: Path | None, target: Path, mode: ImageMode) -> None:
    """Copy or symlink one image file to ``target`` (parents created; an old ``target`` replaced).

    Nothing is done when ``target`` already is ``source``. A symlink points at the absolute
    source path, so the destination works from any current folder.

    Raises:
        FileNotFoundError: ``source`` is ``None`` or not a file.
        ValueError: an unknown ``mode``.
    """
    if mode not in ("copy", "link"):
        raise ValueError(f"image mode must be 'copy' or 'link', got {mode!r}")
    if source is None or not Path(source).is_file():
        raise FileNotFoundError(f"image file not found: {source} (to write {target})")
    source = Path(source)
    if target.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if mode == "copy":
        shutil.copyfile(source, target)
    else:
        os.symlink(source.resolve(), target)


def yaml_string(text: str) -> str:
    """``text`` as a yaml scalar: json's double-quoted string is valid yaml."""
    return json.dumps(text, ensure_ascii=False)
