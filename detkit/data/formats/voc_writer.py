"""Write the neutral form as a PASCAL VOC folder.

::

    <out>/Annotations/<stem>.xml            one per image (objects: name, difficult, bndbox)
    <out>/JPEGImages/<stem><suffix>         images (copied or linked)
    <out>/ImageSets/Main/<split>.txt        the split's stems
    <out>/classes.txt                       the class list, in label order (VOC has none of its own)

``<stem>`` is the image's file name without suffix, sub-folders joined with ``__``.

Box convention, the inverse of :class:`~detkit.data.VOCDetection`'s (``x1 = xmin - 1``,
``x2 = xmax``): VOC's ``xmin, ymin, xmax, ymax`` are 1-based inclusive pixel indices, so

    xmin = x1 + 1,   ymin = y1 + 1,   xmax = x2,   ymax = y2

and VOC -> detkit -> VOC is the identity. Whole-pixel boxes give whole numbers; a sub-pixel box
(from COCO or YOLO) is written with the shortest decimals that read back as the same float32
box, and counted in the report, since VOC tools other than detkit expect whole pixel indices.

What VOC xml cannot hold, counted in the report: crowd annotations (dropped: a crowd region is
no object to train on) and segmentations (VOC's masks are separate PNG files; dropped).
:class:`~detkit.data.VOCDetection` reads one image suffix per dataset; images with another are
counted too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import numpy as np

from .annotations import ConversionReport, DetectionAnnotations, ImageAnnotations, check_unique_stems, shortest_number
from .files import ImageMode, place_image, require_free, write_class_names

__all__ = ["voc_box", "write_voc"]


def voc_box(box: np.ndarray) -> list[int | float]:
    """``[xmin, ymin, xmax, ymax]`` of one ``[4]`` float32 xyxy box, each the shortest number that
    the reader turns back into the same float32 coordinate."""
    x1, y1, x2, y2 = (np.float32(value) for value in box)
    return [shortest_number(float(x1) + 1, lambda v, t=x1: np.float32(v - 1.0) == t),
            shortest_number(float(y1) + 1, lambda v, t=y1: np.float32(v - 1.0) == t),
            shortest_number(float(x2), lambda v, t=x2: np.float32(v) == t),
            shortest_number(float(y2), lambda v, t=y2: np.float32(v) == t)]


def voc_xml(image: ImageAnnotations, stem: str, suffix: str, class_names: list[str], keep: np.ndarray,
            folder: str) -> tuple[bytes, bool]:
    """One annotation file: ``(xml bytes, whether a coordinate is sub-pixel)``; boxes where ``keep``."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = stem + suffix
    size = ET.SubElement(root, "size")
    for key, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    difficult, sub_pixel = image.difficult_flags(), False
    for index in np.flatnonzero(keep):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[int(image.labels[index])]
        ET.SubElement(obj, "difficult").text = str(int(difficult[index]))
        box = ET.SubElement(obj, "bndbox")
        values = voc_box(image.boxes[index])
        sub_pixel |= not all(isinstance(value, int) for value in values)
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), values):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n", sub_pixel


def write_voc(annotations: DetectionAnnotations, out_dir: str | Path, split: str = "train", *,
              images: ImageMode = "copy", overwrite: bool = False) -> ConversionReport:
    """Write ``annotations`` as a VOC folder (layout in the module docstring).

    Args:
        annotations: the split in the neutral form.
        out_dir: the destination folder (created).
        split: the split's name (``ImageSets/Main/<split>.txt``).
        images: ``"copy"`` the image files or ``"link"`` them.
        overwrite: replace an image set of this split (and a ``classes.txt`` with other names).

    Returns:
        The report (crowd boxes and segmentations dropped, sub-pixel boxes, other suffixes).

    Raises:
        ConversionError: the split's image set exists and ``overwrite`` is false; two images
            would share a stem; ``classes.txt`` lists other classes.
        FileNotFoundError: a source image is missing.
    """
    out_dir = Path(out_dir)
    set_file = out_dir / "ImageSets" / "Main" / f"{split}.txt"
    require_free([set_file], overwrite, f"split {split!r}")
    stems = check_unique_stems(annotations.images, f"{out_dir}/JPEGImages")
    report = ConversionReport.start(annotations, "voc", out_dir, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.files.append(write_class_names(out_dir, annotations.class_names, overwrite))  # checked first
    (out_dir / "Annotations").mkdir(exist_ok=True)
    suffixes = [PurePosixPath(image.file_name).suffix for image in annotations.images]
    for image, stem, suffix in zip(annotations.images, stems, suffixes):
        place_image(image.image_path, out_dir / "JPEGImages" / f"{stem}{suffix}", images)
        crowd = image.crowd_flags()
        keep = ~crowd
        for index in np.flatnonzero(crowd):
            report.add("crowd annotations dropped (VOC has no crowd flag)", f"{image.file_name}: box {index}")
        with_segmentation = [i for i in np.flatnonzero(keep) if image.segmentation(i) is not None]
        for index in with_segmentation:
            report.add("segmentations dropped (VOC xml holds boxes; its masks are separate PNG files)",
                       f"{image.file_name}: box {index}")
        xml, sub_pixel = voc_xml(image, stem, suffix, annotations.class_names, keep, out_dir.name)
        if sub_pixel:
            report.add("images with sub-pixel boxes, written as decimals (VOC tools other than detkit "
                       "expect whole pixel indices)", image.file_name)
        if suffix != suffixes[0]:
            report.add(f"images not {suffixes[0]} (VOCDetection reads one image_suffix)", image.file_name)
        xml_path = out_dir / "Annotations" / f"{stem}.xml"
        xml_path.write_bytes(xml)
        report.files.append(xml_path)
        report.num_boxes += int(keep.sum())
    set_file.parent.mkdir(parents=True, exist_ok=True)
    set_file.write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8")
    report.files.append(set_file)
    report.num_images = len(stems)
    return report
