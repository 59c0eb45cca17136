"""A dataset described in a few lines (or not at all), and the detkit datasets built from it.

``detkit train MODEL --data DATASET`` takes DATASET as one of:

* a **description file** (``.yaml`` / ``.yml`` or ``.json``), detkit's own form::

      format: coco                 # coco | voc | yolo
      root: .                      # the folder the paths below are relative to (default: the file's)
      train: {images: images/train, annotations: annotations/train.json}
      val:   {images: images/val,   annotations: annotations/val.json}   # optional
      test:  {images: images/test,  annotations: annotations/test.json}  # optional
      class_names: [cat, dog]      # optional (COCO and VOC find them in the annotations)
      val_fraction: 0.1            # carved from train when there is no val (0: no validation)
      seed: 0                      # which images the carving takes

  per split, ``images`` is the image folder and ``annotations`` the annotations: COCO, the
  instances json; VOC, the folder of ``.xml`` files (default ``root/Annotations``, images default
  ``root/JPEGImages``), with an optional ``image_set`` text file of ids (a VOCdevkit
  ``ImageSets/Main/<split>.txt``); YOLO, the folder of ``.txt`` label files (default: ``images``
  with its last ``images`` component replaced by ``labels``, ultralytics' rule). ``class_names``
  is a list, an ``{id: name}`` mapping, or a text file of one name a line (``classes.txt``,
  ``*.names``);
* an **ultralytics data.yaml** as it is (``path:``, ``train:``, ``val:``, ``test:``, ``names:``
  as a list or an ``{id: name}`` mapping): read as YOLO txt, ``path`` relative to the file's folder;
* a **folder** with no file at all, in one of the common layouts
  (:func:`detkit.data.layouts.describe_folder`: COCO, VOCdevkit, YOLO ``images/`` + ``labels/``).

Class names and their order: COCO, the json's categories sorted by id (or ``class_names``, a
subset in that order); VOC, ``class_names`` or else every ``<name>`` of every split's xml files,
sorted; YOLO, ``class_names`` / ``names`` or a ``classes.txt`` / ``*.names`` file beside the
images (YOLO labels are bare indices). Every split must have the same class list (checked).

The validation split, when none is given and ``val_fraction > 0``: the training images are
permuted with ``numpy.random.default_rng(seed)``, the first ``round(val_fraction * N)`` of the
permutation (at least 1, at most N - 1) are the validation images and the others the training
images, each kept in the reader's order. The carving is deterministic (same data, fraction and
seed -> the same images) and the two splits are disjoint.

Every problem with a description is one line, a :class:`~detkit.data.validation.DatasetError`
that names the file (or folder), the key and the value: ``data.yaml: train: no such folder
images/train``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import DetectionDataset, Transforms
from .coco import CocoDetection
from .formats.files import read_class_names
from .parsing import read_json, read_text_lines, read_xml
from .records import RecordStore
from .validation import DatasetError
from .voc import VOCDetection
from .yolo_txt import IMAGE_SUFFIXES, YOLODetection

__all__ = [
    "DATA_FORMATS",
    "SPLITS",
    "DatasetDescription",
    "SplitLocation",
    "build_datasets",
    "class_names_of",
    "described_dataset",
    "read_description",
]

DATA_FORMATS = ("coco", "voc", "yolo")
SPLITS = ("train", "val", "test")
DEFAULT_VAL_FRACTION = 0.1
DESCRIPTION_SUFFIXES = (".yaml", ".yml", ".json")
_KEYS = {"format", "root", "path", "train", "val", "test", "class_names", "names", "nc", "val_fraction",
         "seed", "image_suffix"}
_SPLIT_KEYS = {"images", "annotations", "image_set"}
# Keys of ultralytics data files that say nothing detkit needs.
_ULTRALYTICS_EXTRAS = {"download", "nc", "kpt_shape", "flip_idx", "yaml_file", "channels"}


@dataclass(frozen=True)
class SplitLocation:
    """Where one split's images and annotations are.

    Attributes:
        images: the image folder.
        annotations: COCO: the instances json; VOC: the folder of xml files; YOLO: the folder of
            label files (``None``: derived from ``images``, ultralytics' rule).
        image_set: VOC only: a text file listing the split's image ids (one a line), or ``None``
            for every xml of ``annotations``.
    """

    images: Path
    annotations: Path | None = None
    image_set: Path | None = None


@dataclass(frozen=True)
class DatasetDescription:
    """A dataset's format, its splits' locations and, optionally, its class names.

    Attributes:
        format: ``"coco"``, ``"voc"`` or ``"yolo"``.
        splits: split name (``"train"``, ``"val"``, ``"test"``) -> :class:`SplitLocation`;
            ``"train"`` is always there.
        class_names: the class names in label order, or ``None`` to take them from the
            annotations (COCO, VOC; YOLO always needs them).
        val_fraction: share of the training images carved out as ``"val"`` when there is no val
            split (0: none); see the module docstring.
        seed: the seed of that carving.
        source: the description file or folder, named in messages.
        image_suffix: VOC: the image files' suffix (default: the most common one in the folder).
    """

    format: str
    splits: Mapping[str, SplitLocation]
    class_names: tuple[str, ...] | None = None
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = 0
    source: str = "<description>"
    image_suffix: str | None = None
    _names_cache: list = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise DatasetError(f"{self.source}: format: {self.format!r} is not one of {', '.join(DATA_FORMATS)}")
        if "train" not in self.splits:
            raise DatasetError(f"{self.source}: no train split (a 'train' entry with its images)")
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            raise DatasetError(f"{self.source}: unknown split(s) {unknown}; splits are {', '.join(SPLITS)}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise DatasetError(f"{self.source}: val_fraction: {self.val_fraction!r} is not in [0, 1)")

    @property
    def has_validation(self) -> bool:
        """Whether there is a val split, given or carved from train."""
        return "val" in self.splits or self.val_fraction > 0

    @property
    def name(self) -> str:
        """A short name for the dataset (the folder's name), e.g. for a run folder."""
        path = Path(self.source)
        return (path.parent.name if path.suffix.lower() in DESCRIPTION_SUFFIXES else path.name) or "data"


# ------------------------------------------------------------------------------------------------
# reading a description


def _load_file(path: Path) -> Any:
    """The parsed yaml or json of a description file."""
    if path.suffix.lower() == ".json":
        return read_json(path, "dataset description")
    try:
        import yaml
    except ImportError:
        raise DatasetError(f"{path}: reading a .yaml description needs PyYAML (pip install pyyaml), "
                           "or write the description as .json") from None
    text = "\n".join(read_text_lines(path, "dataset description"))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise DatasetError(f"{path}: not valid yaml{where} ({problem})") from None


def _folder(base: Path, value: Any, source: str, key: str) -> Path:
    """``base / value``, which must be an existing folder."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise DatasetError(f"{source}: {key}: expected a folder path, got {value!r}")
    path = base / str(value)
    if not path.is_dir():
        raise DatasetError(f"{source}: {key}: no such folder {value}" + ("" if Path(value).is_absolute()
                                                                          else f" (under {base})"))
    return path


def _file(base: Path, value: Any, source: str, key: str) -> Path:
    """``base / value``, which must be an existing file."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise DatasetError(f"{source}: {key}: expected a file path, got {value!r}")
    path = base / str(value)
    if not path.is_file():
        raise DatasetError(f"{source}: {key}: no such file {value}" + ("" if Path(value).is_absolute()
                                                                        else f" (under {base})"))
    return path


def parse_class_names(value: Any, base: Path, source: str, key: str = "class_names") -> tuple[str, ...]:
    """Class names from a list, an ``{id: name}`` mapping (ids 0..C-1) or a names file.

    Raises:
        DatasetError: another kind of value, ids that are not 0..C-1, an empty or duplicated name,
            a missing file (the key and the value named).
    """
    if isinstance(value, (str, Path)):
        path = _file(base, value, source, key)
        names = list(read_class_names(path))  # one reader for names files (text, yaml, json)
        source, key = str(path), "names"
    elif isinstance(value, Mapping):
        try:
            ids = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise DatasetError(f"{source}: {key}: the ids of an {{id: name}} mapping must be integers, "
                               f"got {sorted(map(str, value))[:5]}") from None
        if ids != list(range(len(ids))):
            raise DatasetError(f"{source}: {key}: the ids must be 0..{len(ids) - 1} (YOLO class indices), got {ids[:10]}")
        names = [value[k] if k in value else value[str(k)] for k in ids]
    elif isinstance(value, Sequence):
        names = list(value)
    else:
        raise DatasetError(f"{source}: {key}: expected a list of names, an {{id: name}} mapping or a names "
                           f"file, got {type(value).__name__}")
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad or not names:
        raise DatasetError(f"{source}: {key}: class names must be non-empty strings, got {bad[:3] or names!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(f"{source}: {key}: duplicate class names {repeated}")
    return tuple(str(name) for name in names)


def _split_location(fmt: str, value: Any, base: Path, source: str, key: str) -> SplitLocation:
    """One split's entry of a description file (see the module docstring)."""
    if fmt == "yolo" and isinstance(value, (str, Path)):
        return SplitLocation(_folder(base, value, source, key))
    if isinstance(value, list):
        raise DatasetError(f"{source}: {key}: a list of folders is not supported; give one folder per split")
    if not isinstance(value, Mapping):
        raise DatasetError(f"{source}: {key}: expected {{images: FOLDER, annotations: ...}}"
                           + (" or an image folder" if fmt == "yolo" else "") + f", got {value!r}")
    unknown = sorted(set(value) - _SPLIT_KEYS)
    if unknown:
        raise DatasetError(f"{source}: {key}: unknown key(s) {unknown}; a split has {', '.join(sorted(_SPLIT_KEYS))}")
    if fmt != "voc" and "image_set" in value:
        raise DatasetError(f"{source}: {key}.image_set: only VOC descriptions have image sets")
    images = value.get("images", "JPEGImages" if fmt == "voc" else None)
    if images is None:
        raise DatasetError(f"{source}: {key}: missing 'images' (the image folder)")
    annotations = value.get("annotations", "Annotations" if fmt == "voc" else None)
    if fmt == "coco":
        if annotations is None:
            raise DatasetError(f"{source}: {key}: missing 'annotations' (the COCO json)")
        annotation_path: Path | None = _file(base, annotations, source, f"{key}.annotations")
    else:
        annotation_path = None if annotations is None else _folder(base, annotations, source, f"{key}.annotations")
    image_set = value.get("image_set")
    return SplitLocation(
        images=_folder(base, images, source, f"{key}.images"),
        annotations=annotation_path,
        image_set=None if image_set is None else _file(base, image_set, source, f"{key}.image_set"),
    )


def description_from_mapping(document: Any, source: str, base: Path) -> DatasetDescription:
    """A :class:`DatasetDescription` from a parsed description (detkit's form or ultralytics').

    Args:
        document: the parsed yaml / json.
        source: the file, named in messages.
        base: the folder relative paths start from when there is no ``root`` / ``path`` key.

    Raises:
        DatasetError: see the module docstring.
    """
    if not isinstance(document, Mapping):
        raise DatasetError(f"{source}: a dataset description is a mapping (format:, train:, ...), got "
                           f"{type(document).__name__}")
    ultralytics = "format" not in document
    fmt = str(document.get("format", "yolo")).lower()
    if ultralytics and "train" not in document:
        raise DatasetError(f"{source}: no 'format' key (coco, voc or yolo) and no ultralytics 'train' key")
    unknown = sorted(set(document) - _KEYS - (_ULTRALYTICS_EXTRAS if ultralytics else set()))
    if unknown:
        raise DatasetError(f"{source}: unknown key(s) {unknown}; a description has "
                           f"{', '.join(sorted(_KEYS - {'path', 'names', 'nc'}))}")
    if fmt not in DATA_FORMATS:
        raise DatasetError(f"{source}: format: {fmt!r} is not one of {', '.join(DATA_FORMATS)}")
    root_key = "root" if "root" in document else "path"
    root = document.get(root_key)
    if root is not None and root != "":
        base = _folder(base, root, source, root_key)
    splits = {}
    for split in SPLITS:
        value = document.get(split)
        if value is not None and value != "":
            splits[split] = _split_location(fmt, value, base, source, split)
    if "train" not in splits:
        raise DatasetError(f"{source}: train: missing (every description has a train split)")
    names_key = "class_names" if "class_names" in document else "names"
    names = document.get(names_key)
    class_names = None if names is None else parse_class_names(names, base, source, names_key)
    if "nc" in document and class_names is not None and document["nc"] != len(class_names):
        raise DatasetError(f"{source}: nc: {document['nc']!r} but {names_key} has {len(class_names)} names")
    val_fraction = document.get("val_fraction", DEFAULT_VAL_FRACTION)
    seed = document.get("seed", 0)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise DatasetError(f"{source}: val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DatasetError(f"{source}: seed: expected an integer, got {seed!r}")
    suffix = document.get("image_suffix")
    if suffix is not None and (not isinstance(suffix, str) or not suffix.startswith(".")):
        raise DatasetError(f"{source}: image_suffix: expected a suffix such as '.jpg', got {suffix!r}")
    return DatasetDescription(fmt, splits, class_names, float(val_fraction), seed, source, suffix)


def read_description(data: str | Path | Mapping[str, Any] | DatasetDescription) -> DatasetDescription:
    """The description of ``data``: a description file, an ultralytics data.yaml, a folder in a
    common layout (a ``data.yaml`` / ``dataset.yaml`` inside it is read), or a parsed mapping.

    Raises:
        DatasetError: one line naming the file or folder, the key and the value.
    """
    if isinstance(data, DatasetDescription):
        return data
    if isinstance(data, Mapping):
        return description_from_mapping(data, "<description>", Path.cwd())
    path = Path(data)
    if path.is_dir():
        for name in ("data.yaml", "dataset.yaml", "data.yml", "data.json"):
            if (path / name).is_file():
                return read_description(path / name)
        from .layouts import describe_folder

        return describe_folder(path)
    if not path.exists():
        raise DatasetError(f"--data {data}: no such file or folder (a description .yaml / .json, an "
                           "ultralytics data.yaml or a dataset folder)")
    if path.suffix.lower() not in DESCRIPTION_SUFFIXES:
        raise DatasetError(f"{data}: a dataset description is a .yaml, .yml or .json file (or a folder)")
    return description_from_mapping(_load_file(path), str(path), path.parent)


# ------------------------------------------------------------------------------------------------
# class names


def _voc_names(description: DatasetDescription) -> list[str]:
    """Every object ``<name>`` of every split's xml files, sorted."""
    names: set[str] = set()
    for location in description.splits.values():
        for xml_path in _voc_xml_files(location):
            for obj in read_xml(xml_path, "VOC annotation file").iter("object"):
                text = obj.findtext("name")
                if text and text.strip():
                    names.add(text.strip())
    if not names:
        raise DatasetError(f"{description.source}: no objects in the VOC xml files: cannot find the class "
                           "names (give class_names)")
    return sorted(names)


def _coco_names(path: Path) -> list[str]:
    document = read_json(path, "COCO annotation file")
    categories = document.get("categories") if isinstance(document, Mapping) else None
    if not isinstance(categories, list) or not all(isinstance(c, Mapping) and "id" in c and "name" in c
                                                   for c in categories):
        raise DatasetError(f"{path}: no 'categories' list of {{id, name}} records (COCO instances json)")
    return [str(c["name"]) for c in sorted(categories, key=lambda c: c["id"])]


def _names_diff(split_names: Sequence[str], train_names: Sequence[str]) -> str:
    """How a split's class list differs from train's, in one phrase."""
    only_split = [name for name in split_names if name not in train_names]
    only_train = [name for name in train_names if name not in split_names]
    if not only_split and not only_train:
        return f"the same names in another order ({list(split_names)} vs train's {list(train_names)})"
    return "; ".join(part for part in (only_split and f"only it has {only_split}",
                                       only_train and f"only train has {only_train}") if part)


def class_names_of(description: DatasetDescription) -> list[str]:
    """The class names of the dataset, in label order, the same for every split (see the module
    docstring).

    Raises:
        DatasetError: YOLO data without names; COCO splits whose categories differ (the
            difference shown).
    """
    if description._names_cache:
        return list(description._names_cache[0])
    if description.class_names is not None:
        names = list(description.class_names)
    elif description.format == "yolo":
        raise DatasetError(f"{description.source}: YOLO labels are class indices: give the class names "
                           "(class_names: [...], an ultralytics names: list, or a classes.txt file)")
    elif description.format == "voc":
        names = _voc_names(description)
    else:
        per_split = {split: _coco_names(location.annotations) for split, location in description.splits.items()}
        names = per_split["train"]
        for split, others in per_split.items():
            if others != names:
                raise DatasetError(f"{description.source}: the {split} split's categories differ from train's "
                                   f"({description.splits[split].annotations}): {_names_diff(others, names)}")
    description._names_cache.append(tuple(names))
    return names


# ------------------------------------------------------------------------------------------------
# building datasets


def _voc_xml_files(location: SplitLocation) -> list[Path]:
    annotation_dir = location.annotations
    assert annotation_dir is not None
    if location.image_set is None:
        return sorted(annotation_dir.glob("*.xml"))
    ids = [line.split()[0] for line in read_text_lines(location.image_set, "VOC image-set file") if line.strip()]
    return [annotation_dir / f"{image_id}.xml" for image_id in ids]


def _common_suffix(image_dir: Path) -> str:
    suffixes = [p.suffix for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not suffixes:
        raise DatasetError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return max(sorted(set(suffixes)), key=suffixes.count)


def _read_split(description: DatasetDescription, split: str, names: list[str], *, transforms: Transforms | None,
                with_masks: bool, skip_empty: bool) -> DetectionDataset:
    """The reader of one split that the description lists."""
    location = description.splits[split]
    if with_masks and description.format != "coco":
        raise DatasetError(f"{description.source}: the model needs instance masks, which {description.format} "
                           "annotations cannot hold (use COCO json with segmentations)")
    if description.format == "coco":
        return CocoDetection(location.images, location.annotations, transforms=transforms, with_masks=with_masks,
                             class_names=names, skip_empty=skip_empty)
    if description.format == "yolo":
        if location.annotations is None and "images" not in location.images.parts:
            raise DatasetError(f"{description.source}: {split}: cannot find the labels of {location.images} (no "
                               "'images' folder in its path to replace by 'labels'); give annotations: LABEL_FOLDER")
        labels = location.annotations or _labels_beside(location.images)
        if not labels.is_dir():  # YOLO reads an image without a label file as background: say it here
            raise DatasetError(f"{description.source}: {split}: no label folder {labels} for the images in "
                               f"{location.images}")
        return YOLODetection(location.images, names, label_dir=labels, transforms=transforms, skip_empty=skip_empty)
    suffix = description.image_suffix or _common_suffix(location.images)
    assert location.annotations is not None
    devkit = (location.annotations.name == "Annotations" and location.images.name == "JPEGImages"
              and location.annotations.parent == location.images.parent)
    if devkit:
        return VOCDetection(location.annotations.parent, None, image_set_file=location.image_set,
                            image_suffix=suffix, class_names=names, transforms=transforms, skip_empty=skip_empty)
    from .layouts import VOCFolderDetection

    return VOCFolderDetection(location.annotations, location.images, names, image_set_file=location.image_set,
                              transforms=transforms, skip_empty=skip_empty)


def _labels_beside(image_dir: Path) -> Path:
    """ultralytics' rule: the last ``images`` component of the path replaced by ``labels``."""
    parts = list(image_dir.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:index], "labels", *parts[index + 1:])


def _subset(dataset: DetectionDataset, indices: np.ndarray) -> DetectionDataset:
    """A shallow copy of ``dataset`` holding the records at ``indices`` (same reader class)."""
    part = copy.copy(dataset)
    records = dataset.records
    part.records = records.take(indices) if isinstance(records, RecordStore) else [records[int(i)] for i in indices]
    return part


def carve_validation(dataset: DetectionDataset, val_fraction: float, seed: int, source: str
                     ) -> tuple[DetectionDataset, DetectionDataset]:
    """``(train, val)``: disjoint parts of ``dataset`` (see the module docstring for the rule).

    Raises:
        DatasetError: fewer than 2 images (nothing can be carved).
    """
    count = len(dataset)
    if count < 2:
        raise DatasetError(f"{source}: train has {count} image(s): too few to carve a validation split "
                           f"(val_fraction {val_fraction}); give a val split")
    num_val = min(max(round(val_fraction * count), 1), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    return _subset(dataset, np.sort(order[num_val:])), _subset(dataset, np.sort(order[:num_val]))


def build_datasets(
    description: DatasetDescription | str | Path | Mapping[str, Any],
    split: str | Sequence[str] = ("train", "val"),
    transforms: Transforms | Mapping[str, Transforms | None] | None = None,
    *,
    with_masks: bool = False,
    skip_empty: bool = False,
) -> dict[str, DetectionDataset]:
    """detkit datasets (:class:`CocoDetection`, :class:`VOCDetection`, :class:`YOLODetection`) for
    the splits of a description; ``"val"`` is carved from train when the description has none.

    Args:
        description: a :class:`DatasetDescription`, or what :func:`read_description` reads.
        split: a split name or several.
        transforms: one pipeline for every split, or ``{split: pipeline}``.
        with_masks: decode instance masks (COCO only).
        skip_empty: leave out images with no box.

    Returns:
        ``{split: dataset}``, each with the class names of :func:`class_names_of`.

    Raises:
        DatasetError: a split that is neither listed nor carvable, a split with no image, a
            class list that differs between splits, or any reader's error.
    """
    description = read_description(description)
    names = class_names_of(description)
    wanted = [split] if isinstance(split, str) else list(split)
    built: dict[str, DetectionDataset] = {}
    for name in wanted:
        pipeline = transforms.get(name) if isinstance(transforms, Mapping) else transforms
        carved = name in ("train", "val") and "val" not in description.splits and description.val_fraction > 0
        if name not in description.splits and not (name == "val" and carved):
            raise DatasetError(f"{description.source}: no {name} split (it has "
                               f"{', '.join(description.splits)}" + ("" if name != "val" else
                                                                     "; val_fraction is 0") + ")")
        dataset = _read_split(description, "train" if carved else name, names, transforms=pipeline,
                              with_masks=with_masks, skip_empty=skip_empty)
        if carved:
            train, val = carve_validation(dataset, description.val_fraction, description.seed, description.source)
            dataset = train if name == "train" else val
        if not len(dataset):
            folder = description.splits["train" if carved else name].images
            raise DatasetError(f"{description.source}: {name}: no images in {folder}")
        if dataset.class_names != names:
            raise DatasetError(f"{description.source}: {name}: its classes differ from the dataset's: "
                               f"{_names_diff(dataset.class_names, names)}")
        built[name] = dataset
    return built


def described_dataset(
    data: str | Path | Mapping[str, Any],
    split: str = "train",
    transforms: Transforms | None = None,
    *,
    with_masks: bool = False,
    skip_empty: bool = False,
) -> DetectionDataset:
    """One split of a described dataset: the config node that ``detkit train --data`` writes
    (``L(described_dataset)(data="data.yaml", split="val", transforms=...)``).

    Args:
        data: a description file, a dataset folder or a parsed description (plain data, so the
            config that holds it can be saved and read back).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transforms: the pipeline.
        with_masks: decode instance masks (COCO only).
        skip_empty: leave out images with no box.
    """
    return build_datasets(data, split, transforms, with_masks=with_masks, skip_empty=skip_empty)[split]
