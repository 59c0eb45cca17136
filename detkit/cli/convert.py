"""Convert another library's checkpoint into a self-contained detkit checkpoint.

    detkit convert --from torchvision --arch fasterrcnn_resnet50_fpn IN.pth OUT.pth
    detkit convert --from torchvision --arch maskrcnn_resnet50_fpn \\
        --coco-contiguous maskrcnn_resnet50_fpn_coco.pth mask_rcnn_r50_fpn_coco80.pth

IN.pth is a torchvision ``model.state_dict()`` (read with ``weights_only=True``). The printed
``num_classes`` is what the detkit config needs (``faster_rcnn(num_classes=...)``); with
``--coco-contiguous`` a 91-way COCO predictor becomes the 80 COCO classes of
configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py. ``--arch list`` lists the architectures.

The checkpoint holds ``model`` (the state dict), ``meta`` and, like every checkpoint detkit writes,
``model_config`` and ``class_names``: the model section of the zoo config of that architecture
(:data:`ZOO_CONFIG_OF_ARCH`, or ``--config``) with the converted ``num_classes``, so that
``detkit.load(OUT.pth)`` rebuilds the model with no config file. With ``--coco-contiguous`` the
class names are the 80 COCO names.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import CommandError, load_config_arg, one_line

HELP = "convert a torchvision checkpoint into a detkit checkpoint"

# The detkit zoo config whose model each torchvision architecture's weights fit.
ZOO_CONFIG_OF_ARCH = {
    "fasterrcnn_resnet50_fpn": "faster_rcnn_r50_fpn_1x_coco",
    "maskrcnn_resnet50_fpn": "mask_rcnn_r50_fpn_1x_coco",
    "keypointrcnn_resnet50_fpn": "keypoint_rcnn_r50_fpn_1x_coco",
    "fasterrcnn_mobilenet_v3_large_fpn": "faster_rcnn_mobilenetv3_fpn_1x_coco",
    "ssd300_vgg16": "ssd300_vgg16_120e_coco",
    "ssdlite320_mobilenet_v3_large": "ssdlite320_mobilenetv3_600e_coco",
    "retinanet_resnet50_fpn": "retinanet_r50_fpn_1x_coco",
    "retinanet_resnet50_fpn_v2": "retinanet_r50_fpn_v2_1x_coco",
    "fcos_resnet50_fpn": "fcos_r50_fpn_1x_coco",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit convert``."""
    parser.add_argument("--from", dest="source", required=True, choices=["torchvision"], help="source library")
    parser.add_argument("--arch", required=True,
                        help="source architecture, e.g. fasterrcnn_resnet50_fpn, ssd300_vgg16 ('list' lists them)")
    parser.add_argument("--coco-contiguous", action="store_true",
                        help="cut a 91-way COCO predictor to the 80 COCO classes")
    parser.add_argument("--config", default=None,
                        help="detkit config (path or zoo name) whose model the weights fit; default the "
                             "zoo config of --arch")
    parser.add_argument("input", nargs="?", help="source state dict (.pth)")
    parser.add_argument("output", nargs="?", help="detkit checkpoint to write")


def run(args: argparse.Namespace) -> int:
    """Read, convert, write atomically, and print what was written."""
    from detkit.models.convert import (
        TORCHVISION_DENSE_ARCHS,
        TORCHVISION_RCNN_ARCHS,
        TORCHVISION_SSD_ARCHS,
        convert_torchvision_dense,
        convert_torchvision_rcnn,
        convert_torchvision_ssd,
    )
    from detkit.config import model_config_entries
    from detkit.models.zoo import read_class_names
    from detkit.utils.checkpoint import read_state_dict, save_checkpoint

    archs = [*TORCHVISION_RCNN_ARCHS, *TORCHVISION_SSD_ARCHS, *TORCHVISION_DENSE_ARCHS]
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
    if args.arch in TORCHVISION_DENSE_ARCHS:
        convert = convert_torchvision_dense
    try:
        checkpoint = convert(state_dict, args.arch, coco_contiguous=args.coco_contiguous)
    except (ValueError, KeyError) as error:  # the weights of another model: name the file
        raise CommandError(f"{args.input}: {one_line(error)}") from error
    meta = checkpoint["meta"]
    class_names = read_class_names("coco") if args.coco_contiguous else None
    config = args.config or ZOO_CONFIG_OF_ARCH[args.arch]
    cfg = load_config_arg(config, [f"model.num_classes={meta['num_classes']}", f"model.class_names={class_names!r}"])
    checkpoint.update(model_config_entries(cfg.model, class_names))
    save_checkpoint(checkpoint, args.output)
    print(f"wrote {args.output}: {len(checkpoint['model'])} tensors, {meta['arch']}, "
          f"num_classes={meta['num_classes']}, model config of {config}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit convert``."""
    return parse_command_args("convert", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit convert``; returns the exit status."""
    return run_command("convert", argv)
