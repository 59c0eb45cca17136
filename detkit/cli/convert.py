"""Convert another library's checkpoint into a detkit checkpoint ({"model": state_dict, "meta": {...}}).

    detkit convert --from torchvision --arch fasterrcnn_resnet50_fpn IN.pth OUT.pth
    detkit convert --from torchvision --arch maskrcnn_resnet50_fpn \\
        --coco-contiguous maskrcnn_resnet50_fpn_coco.pth mask_rcnn_r50_fpn_coco80.pth

IN.pth is a torchvision ``model.state_dict()`` (read with ``weights_only=True``). The printed
``num_classes`` is what the detkit config needs (``faster_rcnn(num_classes=...)``); with
``--coco-contiguous`` a 91-way COCO predictor becomes the 80 COCO classes of
configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py. ``--arch list`` lists the architectures.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import CommandError

HELP = "convert a torchvision checkpoint into a detkit checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit convert``."""
    parser.add_argument("--from", dest="source", required=True, choices=["torchvision"], help="source library")
    parser.add_argument("--arch", required=True,
                        help="source architecture, e.g. fasterrcnn_resnet50_fpn, ssd300_vgg16 ('list' lists them)")
    parser.add_argument("--coco-contiguous", action="store_true",
                        help="cut a 91-way COCO predictor to the 80 COCO classes")
    parser.add_argument("input", nargs="?", help="source state dict (.pth)")
    parser.add_argument("output", nargs="?", help="detkit checkpoint to write")


def run(args: argparse.Namespace) -> int:
    """Read, convert, write atomically, and print what was written."""
    from detkit.models.convert import (
        TORCHVISION_RCNN_ARCHS,
        TORCHVISION_SSD_ARCHS,
        convert_torchvision_rcnn,
        convert_torchvision_ssd,
    )
    from detkit.utils.checkpoint import read_state_dict, save_checkpoint

    archs = [*TORCHVISION_RCNN_ARCHS, *TORCHVISION_SSD_ARCHS]
    if args.arch == "list":
        print("\n".join(archs))
        return 0
    if args.arch not in archs:
        raise CommandError(f"--arch {args.arch}: not a torchvision architecture detkit converts "
                           f"(choose from {', '.join(archs)})")
    if args.input is None or args.output is None:
        raise CommandError("give the source state dict and the checkpoint to write: IN.pth OUT.pth")
    state_dict = read_state_dict(args.input)  # weights_only; a bare state dict or its "model" entry
    convert = convert_torchvision_ssd if args.arch in TORCHVISION_SSD_ARCHS else convert_torchvision_rcnn
    checkpoint = convert(state_dict, args.arch, coco_contiguous=args.coco_contiguous)
    save_checkpoint(checkpoint, args.output)
    meta = checkpoint["meta"]
    print(f"wrote {args.output}: {len(checkpoint['model'])} tensors, {meta['arch']}, "
          f"num_classes={meta['num_classes']}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit convert``."""
    return parse_command_args("convert", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit convert``; returns the exit status."""
    return run_command("convert", argv)
