"""The common dataset folder layouts, recognised without a description file.

:func:`describe_folder` finds, in this order (the first complete one wins)::

    COCO   annotations/instances_<split>.json  with images in  <split>/, images/<split>/,
           (e.g. instances_train2017.json + train2017/)         or <name>/ for instances_<name>.json
           annotations.json (or instances.json)  with  images/  (one split: train)
    VOC    Annotations/ + JPEGImages/ [+ ImageSets/Main/{train,trainval,val,test}.txt]
           (or one VOC<year>/ folder holding them: a VOCdevkit); no image sets: all of it is train
           a folder of .xml files with their images beside them (one split: train)
    YOLO   images/<split>/ + labels/<split>/  (ultralytics), <split>/images/ + <split>/labels/
           (Roboflow; "valid" is val), or images/ + labels/ (one split: train); class names from
           classes.txt, obj.names or another single *.names file in the folder

Split names: a name that starts with ``train``, ``val`` (or is ``valid``) or ``test``. A folder
with a ``data.yaml`` is read as that file instead (:func:`detkit.data.description.read_description`).

:class:`VOCFolderDetection` reads VOC xml files from any folder with the images in another (or
the same) folder, matched by file stem; it is :class:`~detkit.data.voc.VOCDetection` in all but
where the files lie.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .base import DetectionDataset, ImageRecord, Transforms
from .description import DatasetDescription, SplitLocation, parse_class_names
from .parsing import read_text_lines
from .validation import DatasetError, DatasetReport
from .voc import VOCDetection, parse_voc_xml
from .yolo_txt import IMAGE_SUFFIXES

__all__ = ["VOCFolderDetection", "describe_folder", "split_of"]

LAYOUTS = ("COCO: annotations/instances_<split>.json + <split>/", "VOC: Annotations/ + JPEGImages/",
           "YOLO: images/ + labels/ (with classes.txt)")


def split_of(name: str) -> str | None:
    """``"train"``, ``"val"`` or ``"test"`` for a folder or file name (``train2017`` -> train)."""
    lowered = name.lower()
    if lowered == "valid":
        return "val"
    return next((split for split in ("train", "val", "test") if lowered.startswith(split)), None)


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _coco(folder: Path) -> DatasetDescription | str:
    annotations = folder / "annotations"
    splits: dict[str, SplitLocation] = {}
    jsons = sorted(annotations.glob("instances_*.json")) if annotations.is_dir() else []
    for path in jsons:
        name = path.stem[len("instances_"):]
        split = split_of(name)
        if split is None or split in splits:
            continue
        candidates = [folder / name, folder / split, folder / "images" / name, folder / "images" / split]
        images = next((c for c in candidates if c.is_dir()), None)
        if images is None:
            return (f"COCO {path.relative_to(folder)} has no image folder "
                    f"({', '.join(str(c.relative_to(folder)) for c in candidates)})")
        splits[split] = SplitLocation(images, path)
    if not jsons:
        single = next((folder / n for n in ("annotations.json", "instances.json") if (folder / n).is_file()), None)
        if single is None:
            return "no annotations/instances_<split>.json"
        if not (folder / "images").is_dir():
            return f"COCO {single.name} without an images/ folder"
        splits["train"] = SplitLocation(folder / "images", single)
    if "train" not in splits:
        return f"COCO annotations/ has no train json (found {', '.join(p.name for p in jsons)})"
    return DatasetDescription("coco", splits, source=str(folder))


def _voc(folder: Path) -> DatasetDescription | str:
    if not (folder / "Annotations").is_dir():
        years = sorted(p for p in folder.glob("VOC*") if (p / "Annotations").is_dir())
        if len(years) == 1:
            folder = years[0]
        elif len(years) > 1:
            return (f"several VOC year folders ({', '.join(p.name for p in years)}): describe which to use "
                    "in a description file")
    annotations, images = folder / "Annotations", folder / "JPEGImages"
    if annotations.is_dir() and images.is_dir():
        sets = folder / "ImageSets" / "Main"
        splits: dict[str, SplitLocation] = {}
        for split, names in (("train", ("train", "trainval")), ("val", ("val",)), ("test", ("test",))):
            found = next((sets / f"{n}.txt" for n in names if (sets / f"{n}.txt").is_file()), None)
            if found is not None:
                splits[split] = SplitLocation(images, annotations, found)
        if "train" not in splits:
            splits = {"train": SplitLocation(images, annotations)}
        return DatasetDescription("voc", splits, source=str(folder))
    if any(folder.glob("*.xml")) and _has_images(folder):
        return DatasetDescription("voc", {"train": SplitLocation(folder, folder)}, source=str(folder))
    return "no Annotations/ + JPEGImages/ and no .xml files beside images"


def _yolo_names(folder: Path) -> tuple[str, ...] | None:
    for candidate in [folder / "classes.txt", folder / "obj.names", *sorted(folder.glob("*.names"))]:
        if candidate.is_file():
            return parse_class_names(candidate.name, folder, str(folder))
    return None


def _yolo(folder: Path) -> DatasetDescription | str:
    splits: dict[str, SplitLocation] = {}
    images, labels = folder / "images", folder / "labels"
    if images.is_dir() and labels.is_dir():
        for sub in sorted(p for p in images.iterdir() if p.is_dir()):
            split = split_of(sub.name)
            if split is not None and split not in splits:
                splits[split] = SplitLocation(sub, labels / sub.name)
        if not splits and _has_images(images):
            splits["train"] = SplitLocation(images, labels)
    else:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            split = split_of(sub.name)
            if split is not None and split not in splits and (sub / "images").is_dir() and (sub / "labels").is_dir():
                splits[split] = SplitLocation(sub / "images", sub / "labels")
    if not splits:
        return "no images/ + labels/ folders"
    if "train" not in splits:
        return f"YOLO folders without a train split (found {', '.join(splits)})"
    names = _yolo_names(folder)
    if names is None:
        return ("YOLO images/ + labels/ without class names: add a classes.txt (one name a line) or a data.yaml "
                "with names:")
    return DatasetDescription("yolo", splits, names, source=str(folder))


def describe_folder(folder: str | Path) -> DatasetDescription:
    """The description of a dataset folder in one of the layouts of the module docstring.

    Raises:
        DatasetError: no layout fits; the message says what each layout lacked.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    detectors: Sequence[tuple[str, Callable[[Path], DatasetDescription | str]]] = (
        ("COCO", _coco), ("VOC", _voc), ("YOLO", _yolo))
    reasons = []
    for name, detect in detectors:
        found = detect(folder)
        if isinstance(found, DatasetDescription):
            return found
        reasons.append(f"{name}: {found}")
    raise DatasetError(f"{folder}: no known dataset layout ({'; '.join(reasons)}); write a description file "
                       "(see detkit.data.description)")


class VOCFolderDetection(VOCDetection):
    """VOC xml annotations in ``annotation_dir`` with the images in ``image_dir`` (by file stem).

    Args:
        annotation_dir: the folder of ``<id>.xml`` files.
        image_dir: the folder of the images (``<id>`` plus any suffix of
            :data:`~detkit.data.yolo_txt.IMAGE_SUFFIXES`); may be ``annotation_dir``.
        class_names: names in label order.
        image_set_file: a text file of the ids to read (default: every xml, sorted).
        keep_difficult: keep ``difficult`` objects (flagged in ``target["difficult"]``).
        transforms: ``(image ndarray, target) -> (image tensor, target)``.
        skip_empty: leave out images with no box.

    Raises:
        DatasetError: an xml with no image of its stem, or any error of :func:`parse_voc_xml`.
    """

    def __init__(
        self,
        annotation_dir: str | Path,
        image_dir: str | Path,
        class_names: Sequence[str],
        *,
        image_set_file: str | Path | None = None,
        keep_difficult: bool = True,
        transforms: Transforms | None = None,
        skip_empty: bool = False,
    ) -> None:
        annotation_dir, image_dir = Path(annotation_dir), Path(image_dir)
        if image_set_file is not None:
            ids = [line.split()[0] for line in read_text_lines(image_set_file, "VOC image-set file") if line.strip()]
        else:
            ids = sorted(path.stem for path in annotation_dir.glob("*.xml"))
        source = str(image_set_file or annotation_dir)
        if len(set(class_names)) != len(class_names):
            raise DatasetError(f"{source}: class_names has duplicates: {list(class_names)}")
        class_to_label = {name: label for label, name in enumerate(class_names)}
        images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        records = []
        for image_id in ids:
            xml_path = annotation_dir / f"{image_id}.xml"
            if not xml_path.is_file():
                raise FileNotFoundError(f"{source}: annotation file not found for image {image_id!r}: {xml_path}")
            if image_id not in images:
                raise DatasetError(f"{xml_path}: no image {image_id}.* in {image_dir}")
            _, size, boxes, labels, difficult = parse_voc_xml(xml_path, class_to_label, keep_difficult)
            records.append(ImageRecord(image_id=image_id, path=images[image_id], size=size, boxes=boxes,
                                       labels=labels, box_fields={"difficult": difficult}, where=str(xml_path)))
        DetectionDataset.__init__(self, records, class_names, source, transforms=transforms, skip_empty=skip_empty,
                                  report=DatasetReport(source))
