"""Read a COCO json, a VOC folder or a YOLO txt folder into the neutral form, through detkit's readers.

Nothing is parsed twice: each reader builds the dataset class detkit trains on
(:class:`~detkit.data.CocoDetection`, :class:`~detkit.data.VOCDetection`,
:class:`~detkit.data.YOLODetection`) with every load-time check they make (malformed files, unknown
classes, boxes clipped to the image or dropped, missing images), and takes its parsed records. The
boxes are therefore exactly the targets those classes give, and what the reader fixed is carried in
:attr:`DetectionAnnotations.read_report`.

Where the data lies (``split`` ``None`` means ``"train"`` where that split exists):

* **COCO**: ``src`` is the json, or a folder holding ``annotations/instances_<split>.json``. The
  images are in ``image_dir``, else the first of ``<root>/<split>``, ``<root>/images/<split>``,
  ``<root>/images``, ``<root>/JPEGImages``, the json's own folder that holds the first image
  (``<root>`` is the folder above ``annotations/``, or the json's folder).
* **VOC**: ``src`` holds ``Annotations/*.xml`` and ``JPEGImages/``; the images of
  ``ImageSets/Main/<split>.txt``, or, with no split given and no ``train.txt``, every xml. The
  image suffix is the one the first image has on disk.
* **YOLO**: ``src`` holds ``images/<split>/`` and ``labels/<split>/`` (ultralytics), or
  ``images/`` and ``labels/``. YOLO txt records neither class names nor image sizes: the names come
  from ``class_names``, else ``src/classes.txt``, ``src/data.yaml`` (``names``) or the one
  ``src/*.names``; the sizes from the image headers.

Class names: ``class_names`` picks and orders them (COCO: a subset of the categories; VOC: the
list every object must be in; YOLO: the names of indices ``0 .. C-1``). Without it: COCO's
categories sorted by id; VOC's ``src/classes.txt`` (which detkit's VOC writer leaves), else the
sorted names found in the xml files.

YOLO coordinates are normalised: the pixel boxes come back from float32 arithmetic
(``(cx - w / 2) * W``), up to about one float32 epsilon times the image side off (1.5e-5 px on a
128-pixel side, 5e-4 px on 4000); coordinates within :data:`YOLO_SNAP_EPS` such epsilons
(``2 * 1.19e-7 * max(W, H)`` px) of a whole pixel are taken as that pixel, so that a box written
from whole pixels reads back as whole pixels. Nothing farther from a whole pixel is moved.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from ..base import DetectionDataset
from ..coco import CocoDetection
from ..parsing import read_text_lines, read_xml
from ..validation import DatasetError, check_image_files
from ..voc import VOCDetection
from ..yolo_txt import IMAGE_SUFFIXES, YOLODetection
from .annotations import FORMATS, DetectionAnnotations, ImageAnnotations
from .files import CLASSES_FILE, read_class_names

__all__ = ["YOLO_SNAP_EPS", "read_annotations", "read_coco", "read_voc", "read_yolo", "source_split"]

YOLO_SNAP_EPS = 2.0  # YOLO coordinates this many float32 epsilons x the image side from a whole pixel snap to it


def _from_dataset(dataset: DetectionDataset, file_names: Sequence[str], source_format: str,
                  category_ids: list[int] | None = None) -> DetectionAnnotations:
    """The neutral form of a detkit dataset's parsed records (no pixel is read)."""
    images = []
    for record, file_name in zip(dataset.records, file_names):
        if PurePosixPath(file_name).is_absolute() or ".." in PurePosixPath(file_name).parts:
            file_name = PurePosixPath(file_name).name  # never write outside the destination
        fields = record.box_fields
        height, width = record.size
        images.append(ImageAnnotations(
            file_name=file_name, width=int(width), height=int(height), boxes=record.boxes, labels=record.labels,
            image_path=Path(record.path), image_id=record.image_id,
            iscrowd=fields["iscrowd"].astype(bool) if "iscrowd" in fields else None,
            difficult=fields["difficult"].astype(bool) if "difficult" in fields else None,
            areas=fields["area"].astype(np.float32) if "area" in fields else None,
            segmentations=list(record.segmentations) if record.segmentations is not None else None))
    return DetectionAnnotations(list(dataset.class_names), images, dataset.source, source_format,
                                category_ids, dataset.load_report)


def _coco_json(src: Path, split: str | None) -> Path:
    if src.is_file():
        return src
    path = src / "annotations" / f"instances_{split or 'train'}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no COCO annotation file {path}; give the json itself as the source")
    return path


def read_coco(annotation_file: str | Path, image_dir: str | Path | None = None,
              class_names: Sequence[str] | None = None, split: str | None = None) -> DetectionAnnotations:
    """A COCO instances json (through :class:`~detkit.data.CocoDetection`, segmentations kept).

    Args:
        annotation_file: the json, or a folder holding ``annotations/instances_<split>.json``.
        image_dir: the image folder; ``None``: found as the module docstring says.
        class_names: categories to keep, in label order (others skipped and counted).
        split: the split's name, to find the json and the images in a folder.

    Raises:
        FileNotFoundError: no json, or no candidate folder holds the first image (all named).
        DatasetError: what :class:`~detkit.data.CocoDetection` refuses (one line).
        ImageReadError: images listed by the json are missing.
    """
    json_path = _coco_json(Path(annotation_file), split)
    dataset = CocoDetection(Path(""), json_path, with_masks=True, class_names=class_names, check_files=False)
    file_names = [record.path.as_posix() for record in dataset.records]
    if image_dir is None:
        root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
        names = [split] if split else [json_path.stem.removeprefix("instances_"), "train"]
        candidates = [root / name for name in names] + [root / "images" / name for name in names]
        candidates += [root / "images", root / "JPEGImages", json_path.parent, root]
        found = [folder for folder in candidates if not file_names or (folder / file_names[0]).is_file()]
        if not found:
            tried = ", ".join(dict.fromkeys(str(folder) for folder in candidates))
            raise FileNotFoundError(f"{json_path}: image {file_names[0]!r} is in none of {tried}; "
                                    "give the image folder (--image-dir)")
        image_dir = found[0]
    image_dir = Path(image_dir)
    for record in dataset.records:
        record.path = image_dir / record.path
    check_image_files((record.path for record in dataset.records), str(json_path))
    category_ids = [dataset.label_to_category_id[label] for label in range(dataset.num_classes)]
    return _from_dataset(dataset, file_names, "coco", category_ids)


def _voc_class_names(root: Path, ids: Sequence[str]) -> list[str]:
    """``root/classes.txt``, else the sorted object names of the xml files of ``ids``."""
    if (root / CLASSES_FILE).is_file():
        return read_class_names(root / CLASSES_FILE)
    names = set()
    for path in (root / "Annotations" / f"{image_id}.xml" for image_id in ids):
        if path.is_file():  # a missing one is named by VOCDetection
            names.update((obj.findtext("name") or "").strip() for obj in read_xml(path).iter("object"))
    return sorted(names - {""})


def read_voc(root: str | Path, split: str | None = None,
             class_names: Sequence[str] | None = None) -> DetectionAnnotations:
    """A VOC folder (through :class:`~detkit.data.VOCDetection`, difficult objects kept and flagged).

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``.
        split: the image set; ``None``: ``train`` when ``ImageSets/Main/train.txt`` exists, else
            every xml.
        class_names: the class list; ``None``: ``root/classes.txt`` or the names in the files.

    Raises:
        FileNotFoundError: no ``Annotations`` folder, no image-set file for ``split``, or an xml
            the image set lists is missing.
        DatasetError: what :class:`~detkit.data.VOCDetection` refuses (one line).
        ImageReadError: images are missing.
    """
    root = Path(root)
    if not (root / "Annotations").is_dir():
        raise FileNotFoundError(f"VOC folder {root} has no Annotations/ folder")
    set_dir = root / "ImageSets" / "Main"
    if split is None and (set_dir / "train.txt").is_file():
        split = "train"
    if split is not None:  # the image set, read as VOCDetection reads it
        lines = read_text_lines(set_dir / f"{split}.txt", "VOC image-set file")
        ids = [line.split()[0] for line in lines if line.strip()]
    else:
        ids = sorted(path.stem for path in (root / "Annotations").glob("*.xml"))
    if class_names is None:
        class_names = _voc_class_names(root, ids)
    suffix = ".jpg"
    if ids:
        on_disk = [path.suffix for path in (root / "JPEGImages").glob(f"{glob.escape(ids[0])}.*")
                   if path.suffix.lower() in IMAGE_SUFFIXES]
        suffix = on_disk[0] if on_disk else suffix
    dataset = VOCDetection(root, None, image_ids=ids, image_suffix=suffix, class_names=class_names)
    return _from_dataset(dataset, [Path(record.path).name for record in dataset.records], "voc")


def _yolo_image_dir(root: Path, split: str | None) -> Path:
    names = [split] if split else ["train"]
    candidates = [root / "images" / name for name in names] + ([] if split else [root / "images"])
    for folder in candidates:
        if folder.is_dir():
            splits = sorted(path.name for path in folder.iterdir() if path.is_dir())
            if not split and splits and not any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.iterdir()):
                raise FileNotFoundError(f"{folder} holds no images but the splits {splits}; choose one (--split)")
            return folder
    raise FileNotFoundError(f"YOLO folder {root} has none of {', '.join(str(c) for c in candidates)} "
                            "(images/<split>/ beside labels/<split>/)")


def _yolo_class_names(root: Path) -> list[str]:
    for name in (CLASSES_FILE, "data.yaml", "dataset.yaml"):
        if (root / name).is_file():
            return read_class_names(root / name)
    names_files = sorted(root.glob("*.names"))
    if len(names_files) == 1:
        return read_class_names(names_files[0])
    raise DatasetError(f"{root}: YOLO labels hold class indices, not names, and there is no {CLASSES_FILE}, "
                       "data.yaml or one *.names file here; give the class names (--names FILE)")


def read_yolo(root: str | Path, split: str | None = None,
              class_names: Sequence[str] | None = None) -> DetectionAnnotations:
    """A YOLO txt folder (through :class:`~detkit.data.YOLODetection`).

    Args:
        root: the folder holding ``images/<split>/`` and ``labels/<split>/`` (or ``images/`` and
            ``labels/``).
        split: the split; ``None``: ``train`` when ``images/train/`` exists, else ``images/``.
        class_names: names of the class indices; ``None``: found as the module docstring says.

    Raises:
        FileNotFoundError: no image folder, or no label folder beside it (every image would read
            as having no object), or, with no split given, ``images/`` holding only split folders.
        DatasetError: no class names found, or what :class:`~detkit.data.YOLODetection` refuses.
        ImageReadError: an image header is unreadable.
    """
    root = Path(root)
    image_dir = _yolo_image_dir(root, split)
    label_dir = root / "labels" / image_dir.relative_to(root / "images")  # YOLODetection's rule
    if not label_dir.is_dir():  # YOLODetection would read every image as having no object
        raise FileNotFoundError(f"YOLO label folder not found: {label_dir} (for the images in {image_dir})")
    names = list(class_names) if class_names is not None else _yolo_class_names(root)
    dataset = YOLODetection(image_dir, names)
    for record in dataset.records:  # float32 noise of the normalised coordinates (module docstring)
        whole = np.rint(record.boxes)
        tolerance = YOLO_SNAP_EPS * float(np.finfo(np.float32).eps) * max(record.size)
        record.boxes = np.where(np.abs(record.boxes - whole) <= tolerance, whole, record.boxes).astype(np.float32)
    file_names = [Path(record.path).relative_to(image_dir).as_posix() for record in dataset.records]
    return _from_dataset(dataset, file_names, "yolo")


def source_split(source_format: str, src: str | Path, split: str | None) -> str:
    """The name of the split read: ``split``, else what a reader takes by default (a COCO
    ``instances_<name>.json`` gives ``<name>``; a folder without splits gives ``"train"``)."""
    if split:
        return split
    src = Path(src)
    if source_format == "coco" and src.is_file():
        stem = src.stem
        return stem.removeprefix("instances_") if stem.startswith("instances_") else "train"
    return "train"


def read_annotations(source_format: str, src: str | Path, split: str | None = None,
                     class_names: Sequence[str] | None = None,
                     image_dir: str | Path | None = None) -> DetectionAnnotations:
    """Read ``src`` in ``source_format`` (``"coco"``, ``"voc"``, ``"yolo"``) into the neutral form.

    Raises:
        ValueError: an unknown format, or ``image_dir`` for a format other than COCO.
    """
    if source_format not in FORMATS:
        raise ValueError(f"unknown dataset format {source_format!r}; choose from {', '.join(FORMATS)}")
    if image_dir is not None and source_format != "coco":
        raise ValueError(f"an image folder is only given for COCO sources ({source_format} has its own layout)")
    if source_format == "coco":
        return read_coco(src, image_dir, class_names, split)
    if source_format == "voc":
        return read_voc(src, split, class_names)
    return read_yolo(src, split, class_names)
