"""The shapes data laid out as a user's own COCO, VOC and YOLO folders (for the --data tests).

Imported as ``own_data_layouts`` (tests/ is on the path through its conftest). The YOLO labels are
written from the COCO json here, in the test, so that the tests do not depend on detkit's own
converters: ``class cx cy w h`` normalised by the image size, 10 significant digits.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from detkit.data.shapes import SHAPE_CLASSES, generate_shapes_dataset


@dataclass(frozen=True)
class OwnDataFolders:
    """One folder per format holding the same images and boxes, plus the class names."""

    coco: Path
    voc: Path
    yolo: Path
    class_names: tuple[str, ...]


def _copy_images(source: Path, names: list[str], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, target / name)


def write_yolo_labels(coco_json: Path, label_dir: Path) -> None:
    """One ``<stem>.txt`` per image of ``coco_json`` (label = category id - 1, as the shapes data)."""
    document = json.loads(coco_json.read_text())
    label_dir.mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {image["id"]: [] for image in document["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in document["images"]}
    for annotation in document["annotations"]:
        width, height = sizes[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        values = [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
        lines[annotation["image_id"]].append(
            f"{annotation['category_id'] - 1} " + " ".join(f"{v:.10g}" for v in values))
    for image in document["images"]:
        (label_dir / f"{Path(image['file_name']).stem}.txt").write_text("".join(f"{line}\n" for line in lines[image["id"]]))


def write_own_data(root: Path, num_train: int = 6, num_val: int = 3, image_size: int = 64,
                   class_names: tuple[str, ...] = SHAPE_CLASSES, seed: int = 0) -> OwnDataFolders:
    """The shapes data under ``root`` as ``coco/`` (annotations/instances_<split>.json + <split>/),
    ``voc/`` (a VOCdevkit year folder) and ``yolo/`` (images/<split>, labels/<split>, classes.txt)."""
    shapes = generate_shapes_dataset(root / "shapes", num_train, num_val, image_size, seed=seed,
                                     class_names=class_names)
    coco, voc, yolo = root / "coco", root / "voc", root / "yolo"
    for split in ("train", "val"):
        json_path = shapes.coco_json(split)
        names = [image["file_name"] for image in json.loads(json_path.read_text())["images"]]
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(json_path, coco / "annotations" / json_path.name)
        _copy_images(shapes.image_dir, names, coco / split)
        _copy_images(shapes.image_dir, names, yolo / "images" / split)
        write_yolo_labels(json_path, yolo / "labels" / split)
    (yolo / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    for sub in ("Annotations", "JPEGImages", "ImageSets"):
        shutil.copytree(shapes.root / sub, voc / sub)
    return OwnDataFolders(coco, voc, yolo, tuple(class_names))
