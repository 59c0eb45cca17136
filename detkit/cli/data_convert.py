"""Convert a detection dataset between COCO json, VOC xml and YOLO txt.

    detkit data convert --from coco --to yolo data/shapes/annotations/instances_train.json data/shapes_yolo
    detkit data convert --from yolo --to voc data/shapes_yolo data/shapes_voc --split train
    detkit data convert --from voc --to coco VOCdevkit/VOC2007 data/voc07_coco --split trainval --link-images

SRC, by format (``--split`` picks the split; default ``train`` where the source has splits):

* ``coco``: the json, or a folder with ``annotations/instances_<split>.json``; the images are
  found beside it (``<root>/<split>``, ``<root>/images``, ``JPEGImages`` ...) or given with
  ``--image-dir``;
* ``voc``: the folder with ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/<split>.txt``
  (without the image set: every xml);
* ``yolo``: the folder with ``images/<split>/`` and ``labels/<split>/`` (or ``images/``,
  ``labels/``); class names from ``--names``, ``classes.txt`` or ``data.yaml``.

DST gets the target's layout: COCO ``annotations/instances_<split>.json`` + ``<split>/``; VOC
``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``, ``classes.txt``; YOLO
``images/<split>/``, ``labels/<split>/``, ``classes.txt``, ``data.yaml``. Converting several
splits into one DST adds each next to the others; a split already there is refused unless
``--overwrite``.

The source is read by detkit's own readers, with their checks: a malformed file, an unknown
class or a missing image stops the command with one line naming it. Boxes and class names (their
order too) are kept exactly; segmentations where the target has them. What the target cannot hold
(YOLO: crowd flags, segmentations, difficult flags; VOC: crowd flags, segmentations; COCO:
difficult flags) is counted and printed, as is what the reader fixed (boxes clipped to the image).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command

HELP = "convert a dataset between COCO json, VOC xml and YOLO txt"

_FORMATS = ("coco", "voc", "yolo")  # detkit.data.formats.FORMATS (not imported: --help stays light)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit data convert``."""
    parser.add_argument("--from", dest="source_format", required=True, choices=_FORMATS, help="format of SRC")
    parser.add_argument("--to", dest="target_format", required=True, choices=_FORMATS, help="format to write")
    parser.add_argument("src", metavar="SRC", help="the dataset to read (see above)")
    parser.add_argument("dst", metavar="DST", help="the folder to write")
    parser.add_argument("--split", default=None,
                        help="the split to convert (default: train, or NAME of a COCO instances_NAME.json)")
    parser.add_argument("--names", default=None, metavar="FILE",
                        help="class names in label order: a text file (one a line) or a yaml/json 'names' list")
    parser.add_argument("--image-dir", default=None, help="image folder of a COCO source (default: found)")
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--copy-images", dest="images", action="store_const", const="copy", default="copy",
                        help="copy the image files into DST (default)")
    images.add_argument("--link-images", dest="images", action="store_const", const="link",
                        help="symlink the image files instead of copying them")
    parser.add_argument("--overwrite", action="store_true", help="write over a split DST already holds")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see."""
    if args.image_dir is not None and args.source_format != "coco":
        parser.error(f"--image-dir is for a COCO source; a {args.source_format} folder has its own image folder")


def run(args: argparse.Namespace) -> int:
    """Check DST, read SRC, write DST, print the report."""
    from detkit.data.formats import convert_dataset, read_class_names
    from detkit.engine.run_folder import check_output_dir

    check_output_dir(args.dst, "DST", create=False)  # before reading; the writer makes it
    class_names = read_class_names(args.names) if args.names is not None else None
    report = convert_dataset(args.source_format, args.src, args.target_format, args.dst, split=args.split,
                             class_names=class_names, image_dir=args.image_dir, images=args.images,
                             overwrite=args.overwrite)
    print(report.summary())
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit data convert``."""
    return parse_command_args("data convert", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit data convert``; returns the exit status."""
    return run_command("data convert", argv)
