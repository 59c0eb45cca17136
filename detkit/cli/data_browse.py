"""Draw the ground truth of a dataset's images, to look at the labels before training on them.

    detkit data browse DATASET [--split NAME] --out DIR [-n 16] [--seed 0]
    detkit data browse --format coco|voc|yolo SRC [--split NAME] [--names classes.txt] --out DIR

Writes one picture per chosen image into DIR (``<image name>.jpg``: boxes with class names, masks
where the annotations have segmentations, keypoints where present; crowd and difficult objects
labelled ``(crowd)`` / ``(difficult)``) and ``contact_sheet.jpg``, all the pictures as thumbnails
with their file names. Small images are drawn enlarged (nearest neighbour, so annotation edges
stay exact) so that the labels can be read.

Without ``--format``, SRC is a dataset as ``detkit train --data`` takes it: a description file
(.yaml / .json, an ultralytics data.yaml) or a folder in a COCO, VOC or YOLO layout
(:func:`detkit.data.read_description`); ``--split`` picks the split (default ``train``).

With ``--format``, SRC is named directly, as the readers take it:

* ``coco``: the annotation json (images in ``--images DIR``, else found beside it: ``ROOT/SPLIT``,
  ``ROOT/images/SPLIT``, ``ROOT/images``, ``ROOT/JPEGImages`` for ``ROOT/annotations/x.json``), or
  a folder ``ROOT`` holding ``annotations/instances_SPLIT.json`` (``--split``, default ``train``);
* ``voc``: the folder holding ``Annotations/`` and ``JPEGImages/``; ``--split`` reads
  ``ImageSets/Main/SPLIT.txt`` (default: every xml); the classes are ``--names`` or, without
  it, every class name in the xml files, sorted;
* ``yolo``: the image folder (``.../images/SPLIT``), or a dataset folder with ``images/SPLIT``
  or ``SPLIT/images`` (``--split``); labels in the matching ``labels`` folder (beside the images
  when the path has no ``images`` part); class names from ``--names`` (else a ``classes.txt`` or
  ``*.names`` file in the dataset folder).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import CommandError

HELP = "draw the ground truth of N images and a contact sheet, to check the labels"

FORMATS = ("coco", "voc", "yolo")
CONTACT_SHEET = "contact_sheet.jpg"
THUMB_SIZE = 256  # pixels, the side of a thumbnail's square on the contact sheet
CAPTION_HEIGHT = 24  # pixels under each thumbnail for its file name
SHEET_GAP = 8  # pixels between thumbnails and around the sheet
MIN_DRAW_SIDE = 512  # images with a shorter side are enlarged to it before drawing
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that name a dataset (shared by ``detkit data browse`` and ``detkit data stats``)."""
    parser.add_argument("source", metavar="SRC", help="the dataset: a description file or a folder as for "
                        "detkit train --data; with --format a COCO json or folder, a VOC folder, a YOLO "
                        "image or dataset folder (see the description)")
    parser.add_argument("--format", default=None, choices=FORMATS,
                        help="annotation format of SRC given directly (default: SRC is a dataset description "
                             "or a folder in a common layout)")
    parser.add_argument("--split", default=None, help="split name (train, val, ...)")
    parser.add_argument("--names", default=None, metavar="FILE",
                        help="class names, one a line (YOLO: required unless a classes.txt is found; "
                             "COCO, VOC: the classes to use, in label order)")
    parser.add_argument("--images", default=None, metavar="DIR", help="COCO: the image folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit data browse``."""
    add_source_arguments(parser)
    parser.add_argument("-n", "--num-images", type=int, default=16, help="images to draw (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random choice of images")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.num_images < 1:
        parser.error(f"argument -n/--num-images: must be at least 1, got {args.num_images}")


# ------------------------------------------------------------------------------------------------
# opening a dataset (one function, to be replaced by the dataset-description loader)


def read_class_names(path: str | Path) -> list[str]:
    """A class list from a file (text one name a line, yaml or json with ``names``), in label order:
    :func:`detkit.data.formats.files.read_class_names`, which ``detkit data convert`` reads too."""
    from detkit.data.formats.files import read_class_names as read_names

    return read_names(path)


def _first_dir(candidates: Sequence[Path], what: str) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise CommandError(f"{what} not found; looked in {', '.join(str(c) for c in candidates)}")


def _coco(source: Path, split: str | None, names: list[str] | None, images: str | None,
          with_masks: bool) -> Any:
    from detkit.data.coco import CocoDetection

    split_name = split or "train"
    if source.is_dir():
        annotation_file, root = source / "annotations" / f"instances_{split_name}.json", source
        if not annotation_file.is_file():
            raise CommandError(f"COCO annotation file not found: {annotation_file} (pass the json as SRC, or "
                               "--split for another instances_SPLIT.json)")
    else:
        annotation_file = source
        root = source.parent.parent if source.parent.name == "annotations" else source.parent
    if images is not None:
        image_dir = Path(images)
        if not image_dir.is_dir():
            raise CommandError(f"--images {image_dir} is not a folder")
    else:
        image_dir = _first_dir([root / split_name, root / "images" / split_name, root / "images",
                                root / "JPEGImages", root], "COCO image folder (pass --images DIR)")
    return CocoDetection(image_dir, annotation_file, class_names=names, with_masks=with_masks)


def _voc(source: Path, split: str | None, names: list[str] | None) -> Any:
    from detkit.data.parsing import read_text_lines, read_xml
    from detkit.data.voc import VOCDetection

    if not (source / "Annotations").is_dir():
        raise CommandError(f"VOC folder {source} has no Annotations/ folder")
    image_dir = source / "JPEGImages"
    suffixes = Counter(p.suffix for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) \
        if image_dir.is_dir() else Counter()
    suffix = suffixes.most_common(1)[0][0] if suffixes else ".jpg"
    if names is None:  # every class the xml files name
        if split is not None:
            ids = [line.split()[0] for line in read_text_lines(
                source / "ImageSets" / "Main" / f"{split}.txt", "VOC image-set file") if line.strip()]
            xmls = [source / "Annotations" / f"{i}.xml" for i in ids]
        else:
            xmls = sorted((source / "Annotations").glob("*.xml"))
        names = sorted({(obj.findtext("name") or "").strip() for xml in xmls if xml.is_file()
                        for obj in read_xml(xml, "VOC annotation file").iter("object")} - {""})
    return VOCDetection(source, split, image_suffix=suffix, class_names=names)


def _yolo(source: Path, split: str | None, names: list[str] | None) -> Any:
    from detkit.data.yolo_txt import YOLODetection

    if split is not None:
        image_dir = _first_dir([source / "images" / split, source / split / "images", source / split],
                               f"YOLO image folder of split {split!r}")
    elif (source / "images").is_dir() and not any(p.suffix.lower() in _IMAGE_SUFFIXES
                                                  for p in source.iterdir()):
        image_dir = source / "images"
    else:
        image_dir = source
    if not image_dir.is_dir():
        raise CommandError(f"YOLO image folder not found: {image_dir}")
    if names is None:
        folders = [image_dir, *image_dir.parents][:4]
        found = [f for folder in folders for f in [folder / "classes.txt", *sorted(folder.glob("*.names"))]
                 if f.is_file()]
        if not found:
            raise CommandError(f"YOLO labels hold class numbers only: pass --names FILE (one class name a "
                               f"line); no classes.txt or *.names found near {image_dir}")
        names = read_class_names(found[0])
    label_dir = None if "images" in image_dir.parts else image_dir  # darknet: txt beside the images
    return YOLODetection(image_dir, names, label_dir=label_dir)


def open_dataset(format: str | None, source: str | Path, split: str | None = None, names: str | Path | None = None,
                 images: str | Path | None = None, *, with_masks: bool = False) -> Any:
    """The dataset that ``--format FORMAT SRC [--split] [--names] [--images]`` name.

    Args:
        format: ``"coco"``, ``"voc"`` or ``"yolo"``, or None: ``source`` is a dataset description
            or a folder in a common layout (:func:`detkit.data.read_description`).
        source: SRC, as the module docstring describes per format.
        split: the split name, or ``None``.
        names: a class names file, or ``None``.
        images: COCO's image folder, or ``None`` to find it.
        with_masks: COCO: decode the segmentations into ``masks``.

    Returns:
        A :class:`~detkit.data.base.DetectionDataset` without transforms.

    Raises:
        CommandError: SRC or a folder it implies does not exist, or YOLO class names are missing.
        DatasetError, FileNotFoundError, ImageReadError: from the readers, naming the file.
    """
    path = Path(source)
    if not path.exists():
        raise CommandError(f"SRC {path} does not exist")
    if format is None:  # a dataset description or a folder, as `detkit train --data` takes it
        from detkit.data import build_datasets, read_description

        if names is not None or images is not None:
            raise CommandError("--names and --images go with --format; a description names its classes "
                               "and images itself")
        import dataclasses

        split = split or "train"
        # The whole split as the files hold it: no validation carved out of train for looking.
        description = dataclasses.replace(read_description(path), val_fraction=0.0)
        # Masks where the format holds them (COCO); the others are drawn with boxes only.
        masks = with_masks and description.format == "coco"
        return build_datasets(description, split, with_masks=masks)[split]
    if format not in FORMATS:
        raise CommandError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    class_names = read_class_names(names) if names is not None else None
    if format == "coco":
        return _coco(path, split, class_names, None if images is None else str(images), with_masks)
    if images is not None:
        raise CommandError(f"--images is for --format coco; {format} finds its images from SRC")
    if format == "voc":
        return _voc(path, split, class_names)
    return _yolo(path, split, class_names)


# ------------------------------------------------------------------------------------------------
# drawing


def ground_truth_result(target: dict[str, Any], class_names: Sequence[str], has_mask: Any = None) -> Any:
    """A target as a :class:`~detkit.utils.result.Result` to draw (every score 1).

    Crowd and difficult objects are named ``"<class> (crowd)"`` / ``"<class> (difficult)"``;
    keypoints ``[N, K, 3]`` with visibility 0 are moved off the image (not drawn).

    Args:
        target: ``boxes [N, 4]``, ``labels [N]``, optional ``iscrowd``, ``difficult``, ``masks
            [N, H, W]``, ``keypoints`` / ``landmarks [N, K, 2 or 3]``, ``orig_size``.
        class_names: names of the labels.
        has_mask: ``[N]`` bool, which objects have a real segmentation (the others get no mask).
    """
    import numpy as np

    from detkit.utils.result import Result, label_name

    boxes = np.asarray(target["boxes"], np.float32).reshape(-1, 4)
    labels = np.asarray(target["labels"], np.int64).reshape(-1)
    count = len(boxes)
    names = [label_name(int(label), class_names) for label in labels]
    for flag in ("iscrowd", "difficult"):
        marks = np.asarray(target.get(flag, np.zeros(count))).astype(bool).reshape(-1)
        word = "crowd" if flag == "iscrowd" else "difficult"
        names = [f"{name} ({word})" if mark else name for name, mark in zip(names, marks)]
    masks = target.get("masks")
    if masks is not None:
        masks = np.asarray(masks).astype(bool)
        if has_mask is not None:
            masks = masks & np.asarray(has_mask, bool).reshape(-1, 1, 1)
        if not masks.any():
            masks = None
    points = target.get("keypoints", target.get("landmarks"))
    if points is not None:
        points = np.asarray(points, np.float32).reshape(count, -1, np.asarray(points).shape[-1])
        if points.shape[-1] == 3:  # (x, y, visibility): an invisible point goes off the image
            points = np.where(points[..., 2:] > 0, points[..., :2], -1e4).astype(np.float32)
        if points.shape[1] == 0:
            points = None
    height, width = target.get("orig_size", (0, 0))
    return Result(boxes=boxes, scores=np.ones(count, np.float32), labels=labels, class_names=names,
                  image_size=(int(height), int(width)), masks=masks, landmarks=points)


def scale_result(result: Any, factor: float) -> Any:
    """``result`` on an image resized by ``factor``: boxes and points scaled; masks are left at
    their size (:func:`~detkit.utils.visualization.draw_predictions` resizes them to the image)."""
    from dataclasses import replace

    height, width = result.image_size
    return replace(result, boxes=result.boxes * factor,
                   image_size=(round(height * factor), round(width * factor)),
                   landmarks=None if result.landmarks is None else result.landmarks * factor)


def draw_ground_truth(image_bgr: Any, result: Any, min_side: int = MIN_DRAW_SIDE,
                      fit: int | None = None) -> Any:
    """``result`` drawn on the image by :func:`detkit.utils.visualization.draw_predictions`.

    The image is resized first and the result with it, so that the labels are drawn at the size
    they are seen: ``fit`` scales the image to fit a ``fit`` square (a thumbnail); else an image
    whose shorter side is under ``min_side`` pixels is enlarged by a whole factor (nearest
    neighbour, so every annotated pixel stays sharp).

    Returns:
        ``[H', W', 3]`` uint8 BGR.
    """
    import cv2

    from detkit.utils.visualization import draw_predictions

    height, width = image_bgr.shape[:2]
    if fit is not None:
        factor = fit / max(height, width)
    else:
        factor = float(max(1, math.ceil(min_side / max(1, min(height, width)))))
    if factor != 1:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_NEAREST
        image_bgr = cv2.resize(image_bgr, size, interpolation=interpolation)
        result = scale_result(result, factor)
    return draw_predictions(image_bgr, result, show_scores=False)


def _fit_text(text: str, width: int, scale: float) -> str:
    """``text`` cut in the middle (``a...z``) until it is at most ``width`` pixels wide."""
    import cv2

    if cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width:
        return text
    keep = len(text)
    while keep > 2:
        keep -= 1
        short = text[: keep // 2] + "..." + text[len(text) - (keep - keep // 2):]
        if cv2.getTextSize(short, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width:
            return short
    return text[:1]


def contact_sheet(images: Sequence[Any], captions: Sequence[str], thumb_size: int = THUMB_SIZE,
                  columns: int | None = None) -> Any:
    """A grid of thumbnails, each over its caption.

    Each image is scaled to fit a ``thumb_size`` square (aspect kept, centred on light grey);
    ``columns`` defaults to ``ceil(sqrt(len(images)))``.

    Returns:
        ``[rows * (thumb_size + CAPTION_HEIGHT + SHEET_GAP) + SHEET_GAP,
        columns * (thumb_size + SHEET_GAP) + SHEET_GAP, 3]`` uint8 BGR, white.
    """
    import cv2
    import numpy as np

    count = len(images)
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    cell_w, cell_h = thumb_size + SHEET_GAP, thumb_size + CAPTION_HEIGHT + SHEET_GAP
    sheet = np.full((rows * cell_h + SHEET_GAP, columns * cell_w + SHEET_GAP, 3), 255, np.uint8)
    for index, (image, caption) in enumerate(zip(images, captions)):
        top, left = SHEET_GAP + (index // columns) * cell_h, SHEET_GAP + (index % columns) * cell_w
        height, width = image.shape[:2]
        scale = thumb_size / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        thumb = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        sheet[top:top + thumb_size, left:left + thumb_size] = 235
        y, x = top + (thumb_size - size[1]) // 2, left + (thumb_size - size[0]) // 2
        sheet[y:y + size[1], x:x + size[0]] = thumb
        text = _fit_text(caption, thumb_size, 0.45)
        cv2.putText(sheet, text, (left, top + thumb_size + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return sheet


def choose_images(count: int, num_images: int, seed: int) -> list[int]:
    """``num_images`` of ``range(count)`` drawn at random with ``seed`` (all when fewer), sorted."""
    import numpy as np

    if num_images >= count:
        return list(range(count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, num_images, replace=False))


def _mask_flags(dataset: Any, index: int) -> Any:
    """``[N]`` bool: which objects of item ``index`` have a segmentation (COCO records), else ``None``."""
    segmentations = getattr(dataset.records[index], "segmentations", None) if hasattr(dataset, "records") else None
    if segmentations is None:
        return None
    return [bool(s) for s in segmentations]


def run(args: argparse.Namespace) -> int:
    """Draw the chosen images and the contact sheet; print what was written."""
    import cv2

    from detkit.engine.run_folder import check_output_dir
    from detkit.utils.image_io import ImageReadError

    out = check_output_dir(args.out, "--out", create=False)  # checked now, made once the data has loaded
    dataset = open_dataset(args.format, args.source, args.split, args.names, args.images, with_masks=True)
    if len(dataset) == 0:
        raise CommandError(f"{args.source}: the dataset has no images")
    chosen = choose_images(len(dataset), args.num_images, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    pictures, captions, used = [], [], set()  # pictures: thumbnails drawn at their own size
    for index in chosen:
        image_rgb, target = dataset.load_raw(index)
        result = ground_truth_result(target, dataset.class_names, _mask_flags(dataset, index))
        picture = draw_ground_truth(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), result)
        file_name = Path(target["file_name"])
        stem = file_name.stem if file_name.stem not in used else f"{file_name.stem}_{index}"
        used.add(stem)
        if not cv2.imwrite(str(out / f"{stem}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise ImageReadError(f"could not write {out / (stem + '.jpg')}")
        pictures.append(draw_ground_truth(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), result, fit=THUMB_SIZE))
        captions.append(f"{file_name.name}: {len(result)} object{'' if len(result) == 1 else 's'}")
    sheet_path = out / CONTACT_SHEET
    if not cv2.imwrite(str(sheet_path), contact_sheet(pictures, captions), [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise ImageReadError(f"could not write {sheet_path}")
    print(f"{dataset.source}: {len(dataset)} images, {len(dataset.class_names)} classes "
          f"({', '.join(dataset.class_names[:10])}{', ...' if len(dataset.class_names) > 10 else ''})")
    print(f"drew {len(chosen)} images into {out}; contact sheet {sheet_path}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit data browse``."""
    return parse_command_args("data browse", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit data browse``; returns the exit status."""
    return run_command("data browse", argv)
