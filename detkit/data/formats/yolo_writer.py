"""Write the neutral form as a YOLO txt folder (darknet / ultralytics layout).

::

    <out>/images/<split>/<stem><suffix>     images (copied or linked)
    <out>/labels/<split>/<stem>.txt         one line per box: ``class cx cy w h``
    <out>/classes.txt                       the class names, one per line, in label order
    <out>/data.yaml                         ultralytics' data file: path, the splits there, names

``<stem>`` is the image's file name without suffix, sub-folders joined with ``__``. Every image
gets a label file (an empty one when it has no box).

Box convention: the centre and size normalised by the image size,
``cx = (x1 + x2) / 2 / W``, ``w = (x2 - x1) / W`` (same in y with ``H``), the inverse of
:class:`~detkit.data.YOLODetection`'s ``x1 = (cx - w / 2) * W``. Numbers are written with
:data:`YOLO_DIGITS` significant digits (``%.8g``): a relative error of at most 5e-9, 5e-5 px on
a 10,000-pixel side, far below the float32 the readers hold boxes in.

What YOLO detection txt cannot hold, counted in the report: crowd annotations (dropped: a crowd
region written as an object would be trained on), segmentations (dropped: detection labels are
boxes), difficult flags (the boxes are written as ordinary objects).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from .annotations import ConversionReport, DetectionAnnotations, ImageAnnotations, check_unique_stems
from .files import ImageMode, place_image, require_free, write_class_names, yaml_string

__all__ = ["YOLO_DIGITS", "write_yolo", "yolo_lines"]

YOLO_DIGITS = 8  # significant digits of the normalised coordinates


def yolo_lines(image: ImageAnnotations, keep: np.ndarray) -> list[str]:
    """The label lines ``class cx cy w h`` of the boxes where ``keep`` (``[N]`` bool)."""
    boxes = image.boxes.astype(np.float64)[keep]
    scale = np.asarray([image.width, image.height], dtype=np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / scale
    sizes = (boxes[:, 2:] - boxes[:, :2]) / scale
    return [f"{int(label)} " + " ".join(f"{value:.{YOLO_DIGITS}g}" for value in (*centre, *size))
            for label, centre, size in zip(image.labels[keep], centres, sizes)]


def _data_yaml(out_dir: Path, class_names: list[str]) -> str:
    """ultralytics' data file, listing every split that ``out_dir/images`` holds."""
    splits = sorted(path.name for path in (out_dir / "images").iterdir() if path.is_dir())
    lines = ["# written by detkit data convert (YOLO txt: images/<split>, labels/<split>)",
             f"path: {yaml_string(str(out_dir.resolve()))}"]
    lines += [f"{split}: {yaml_string(f'images/{split}')}" for split in splits]
    lines += [f"nc: {len(class_names)}", "names:"]
    lines += [f"  {label}: {yaml_string(name)}" for label, name in enumerate(class_names)]
    return "\n".join(lines) + "\n"


def write_yolo(annotations: DetectionAnnotations, out_dir: str | Path, split: str = "train", *,
               images: ImageMode = "copy", overwrite: bool = False) -> ConversionReport:
    """Write ``annotations`` as a YOLO txt folder (layout in the module docstring).

    Args:
        annotations: the split in the neutral form.
        out_dir: the destination folder (created).
        split: the split's name (``images/<split>``, ``labels/<split>``).
        images: ``"copy"`` the image files or ``"link"`` them.
        overwrite: write into a ``labels/<split>`` that is not empty (and replace a
            ``classes.txt`` with other names).

    Returns:
        The report (crowd boxes, segmentations and difficult flags that YOLO cannot hold).

    Raises:
        ConversionError: ``labels/<split>`` is not empty and ``overwrite`` is false; two images
            would share a stem; ``classes.txt`` lists other classes.
        FileNotFoundError: a source image is missing.
    """
    out_dir = Path(out_dir)
    label_dir, image_dir = out_dir / "labels" / split, out_dir / "images" / split
    require_free([label_dir], overwrite, f"split {split!r}")
    stems = check_unique_stems(annotations.images, str(image_dir))
    report = ConversionReport.start(annotations, "yolo", out_dir, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.files.append(write_class_names(out_dir, annotations.class_names, overwrite))  # checked first
    label_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    for image, stem in zip(annotations.images, stems):
        place_image(image.image_path, image_dir / f"{stem}{PurePosixPath(image.file_name).suffix}", images)
        crowd, difficult = image.crowd_flags(), image.difficult_flags()
        keep = ~crowd
        for index in np.flatnonzero(crowd):
            report.add("crowd annotations dropped (YOLO txt has no crowd flag)", f"{image.file_name}: box {index}")
        for index in np.flatnonzero(keep):
            if image.segmentation(index) is not None:
                report.add("segmentations dropped (YOLO detection txt holds boxes only)",
                           f"{image.file_name}: box {index}")
            if difficult[index]:
                report.add("difficult flags (YOLO txt has none: written as ordinary objects)",
                           f"{image.file_name}: box {index}")
        lines = yolo_lines(image, keep)
        label_path = label_dir / f"{stem}.txt"
        label_path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        report.files.append(label_path)
        report.num_boxes += len(lines)
    data_file = out_dir / "data.yaml"
    data_file.write_text(_data_yaml(out_dir, annotations.class_names), encoding="utf-8")
    report.files.append(data_file)
    report.num_images = len(stems)
    return report

