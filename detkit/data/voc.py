"""PASCAL VOC datasets: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

Coordinate convention (chosen to match detectron2's VOC reader): VOC's ``xmin, ymin, xmax, ymax``
are 1-based *inclusive pixel indices*: a box over pixels (1-based) 1..3 has xmin=1, xmax=3. In
detkit's continuous 0-based xyxy (pixel ``i`` covers ``[i, i + 1)``) the same box spans ``[0, 3)``:

    x1 = xmin - 1,   y1 = ymin - 1,   x2 = xmax,   y2 = ymax

so the width ``x2 - x1 = xmax - xmin + 1`` is VOC's own "+1" width, and an object that touches
the right border (xmax = W) ends exactly at ``W``. The shapes generator writes xml with the
inverse (``xmin = x1 + 1``, ``xmax = x2``), so a round trip is exact.

``difficult`` objects are kept by default with ``difficult [N] bool`` in the target, so VOC
evaluation can ignore them; ``keep_difficult=False`` drops them (often done for training).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import DetectionDataset, ImageRecord, Transforms
from .parsing import parse_number, read_text_lines, read_xml
from .validation import DatasetError, DatasetReport

__all__ = ["VOC_CLASSES", "VOCDetection", "parse_voc_xml"]

# The 20 PASCAL VOC classes in the standard (alphabetical) order used by every VOC model zoo.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def _text(element: ET.Element, path: str, what: str) -> str:
    """The stripped text of ``element/path``; a :class:`DatasetError` naming ``what`` when the
    element is missing or empty."""
    found = element.find(path)
    if found is None:
        raise DatasetError(f"{what}: missing <{path}>")
    if found.text is None or not found.text.strip():
        raise DatasetError(f"{what}: empty <{path}>")
    return found.text.strip()


def parse_voc_xml(
    xml_path: Path, class_to_label: dict[str, int], keep_difficult: bool = True
) -> tuple[str | None, tuple[int, int], np.ndarray, np.ndarray, np.ndarray]:
    """Read one VOC annotation file.

    Args:
        xml_path: the ``.xml`` file.
        class_to_label: class name -> contiguous 0-based label.
        keep_difficult: when ``False``, ``difficult`` objects are left out.

    Returns:
        ``(filename or None, (height, width), boxes [N, 4] float32 xyxy 0-based continuous,
        labels [N] int64, difficult [N] bool)``.

    Raises:
        DatasetError: malformed xml (truncated: line and column named), a missing or empty
            ``<size>`` field or one that is not a positive integer, an object without
            ``<name>`` or ``<bndbox>``, a coordinate that is not a finite number
            (``<xmin>abc</xmin>``), ``<difficult>`` not 0 / 1, or an object whose class is not
            in ``class_to_label``: one line naming the file, the object (index and class) and
            the field.
    """
    where = str(xml_path)
    root = read_xml(xml_path, "VOC annotation file")
    filename = root.findtext("filename")
    size = tuple(
        int(parse_number(_text(root, f"size/{key}", where), f"<size><{key}>", where, integer=True, positive=True))
        for key in ("height", "width")
    )
    boxes, labels, difficult = [], [], []
    for index, obj in enumerate(root.iter("object")):
        name = _text(obj, "name", f"{where}: object {index}")
        what = f"{where}: object {index} ({name})"
        if name not in class_to_label:
            raise DatasetError(
                f"{where}: object {index} has class {name!r}, which is not in the class list "
                f"{sorted(class_to_label)} (pass class_names= matching the data)"
            )
        flag = obj.findtext("difficult", "0").strip() or "0"
        if flag not in ("0", "1"):
            raise DatasetError(f"{what}: <difficult> must be 0 or 1, got {flag!r}")
        is_difficult = flag == "1"
        if is_difficult and not keep_difficult:
            continue
        if obj.find("bndbox") is None:
            raise DatasetError(f"{what}: missing <bndbox>")
        xmin, ymin, xmax, ymax = (
            parse_number(_text(obj, f"bndbox/{key}", what), f"<{key}>", what) for key in ("xmin", "ymin", "xmax", "ymax")
        )
        boxes.append([xmin - 1.0, ymin - 1.0, xmax, ymax])  # 1-based inclusive -> 0-based continuous
        labels.append(class_to_label[name])
        difficult.append(is_difficult)
    return (
        filename.strip() if filename else None,
        size,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(difficult, dtype=bool),
    )


class VOCDetection(DetectionDataset):
    """A PASCAL VOC detection dataset (or any dataset in its folder layout, e.g. shapes).

    The images are listed by, in this order of precedence: ``image_ids`` (explicit list),
    ``image_set_file`` (a text file with one id per line), ``split`` (reads
    ``root/ImageSets/Main/<split>.txt``), or, when all three are ``None``, every xml in
    ``root/Annotations`` sorted by name. The image file is ``root/JPEGImages/<filename>`` with the
    ``root/JPEGImages/<id><image_suffix>``, as torchvision and detectron2 find it; the xml's
    ``<filename>`` is not used because it is unreliable (the VOC2012 sample in detkit's tests says
    ``000002.jpg`` for ``000001``).

    Args:
        root: the year folder, e.g. ``VOCdevkit/VOC2007`` (holding ``Annotations``, ``JPEGImages``).
        split: ``"train"``, ``"val"``, ``"trainval"``, ``"test"`` or ``None``.
        image_set_file: an explicit image-set file (overrides ``split``).
        image_ids: explicit ids (overrides both).
        image_suffix: the image files' suffix (``".png"`` for the shapes generator's output).
        class_names: names in label order; default :data:`VOC_CLASSES`. An object of another
            class is an error naming the file and the class.
        keep_difficult: keep ``difficult`` objects (flagged in ``target["difficult"]``).
        transforms: ``(image ndarray, target) -> (image tensor, target)``.
        skip_empty: leave out images with no box.
        check_files: check every image file exists now.
        verify_images: read every image header now.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "trainval",
        *,
        image_set_file: str | Path | None = None,
        image_ids: Sequence[str] | None = None,
        image_suffix: str = ".jpg",
        class_names: Sequence[str] = VOC_CLASSES,
        keep_difficult: bool = True,
        transforms: Transforms | None = None,
        skip_empty: bool = False,
        check_files: bool = True,
        verify_images: bool = False,
    ) -> None:
        root = Path(root)
        annotation_dir = root / "Annotations"
        if image_ids is not None:
            ids, source = list(image_ids), str(annotation_dir)
        elif image_set_file is not None or split is not None:
            set_file = (
                Path(image_set_file) if image_set_file is not None else root / "ImageSets" / "Main" / f"{split}.txt"
            )
            ids = [line.split()[0] for line in read_text_lines(set_file, "VOC image-set file") if line.strip()]
            source = str(set_file)
        else:
            ids, source = sorted(path.stem for path in annotation_dir.glob("*.xml")), str(annotation_dir)
        if len(set(class_names)) != len(class_names):
            raise DatasetError(f"{source}: class_names has duplicates: {list(class_names)}")
        class_to_label = {name: label for label, name in enumerate(class_names)}

        records = []
        for image_id in ids:
            xml_path = annotation_dir / f"{image_id}.xml"
            if not xml_path.is_file():
                raise FileNotFoundError(f"{source}: annotation file not found for image {image_id!r}: {xml_path}")
            _, size, boxes, labels, difficult = parse_voc_xml(xml_path, class_to_label, keep_difficult)
            records.append(
                ImageRecord(
                    image_id=image_id,
                    path=root / "JPEGImages" / f"{image_id}{image_suffix}",
                    size=size,
                    boxes=boxes,
                    labels=labels,
                    box_fields={"difficult": difficult},
                    where=str(xml_path),
                )
            )
        super().__init__(
            records,
            class_names,
            source,
            transforms=transforms,
            check_files=check_files,
            verify_images=verify_images,
            skip_empty=skip_empty,
            report=DatasetReport(source),
        )
