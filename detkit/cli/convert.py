"""Convert another library's checkpoint into a self-contained detkit checkpoint.

    detkit convert --from torchvision --arch fasterrcnn_resnet50_fpn IN.pth OUT.pth
    detkit convert --from torchvision --arch maskrcnn_resnet50_fpn \\
        --coco-contiguous maskrcnn_resnet50_fpn_coco.pth mask_rcnn_r50_fpn_coco80.pth
    detkit convert --from ultralytics --arch yolov8n yolov8n.pt yolov8n_coco.pth

ultralytics: IN is a ``DetectionModel`` state dict (``model.0.conv.weight`` ...) or an ultralytics
checkpoint ``.pt`` (read by :func:`read_source_weights` without running code from the file); the
architecture is ``yolov8{n,s,m,l,x}`` or ``yolo11{n,s,m,l,x}``, the model config that of
configs/yolov8/ for that variant at that scale.

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

HELP = "convert a torchvision or ultralytics checkpoint into a detkit checkpoint"

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
SOURCES = ("torchvision", "ultralytics")


def ultralytics_zoo_config(arch: str) -> tuple[str, list[str]]:
    """The zoo config whose model an ultralytics ``arch`` fits, and the overrides that set its scale."""
    variant, scale = arch[:-1], arch[-1]
    return f"{variant}n_500e_coco", [f"model.scale={scale!r}"]


def read_source_weights(path: str, source: str) -> dict:
    """The ``{key: tensor}`` state dict that ``source``'s converter reads from ``path``.

    torchvision: a ``model.state_dict()`` file, read with ``weights_only=True``. ultralytics: a
    ``DetectionModel`` state dict or an ultralytics ``.pt`` checkpoint (a pickled model, read by
    a restricted unpickler that rebuilds only tensors and containers and runs nothing from the file).
    """
    if source == "ultralytics":
        from detkit.models.convert.ultralytics_checkpoint import read_ultralytics_checkpoint

        return read_ultralytics_checkpoint(path)
    from detkit.utils.checkpoint import read_state_dict

    return read_state_dict(path)  # weights_only; a bare state dict or its "model" entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit convert``."""
    parser.add_argument("--from", dest="source", required=True, choices=list(SOURCES), help="source library")
    parser.add_argument("--arch", required=True,
                        help="source architecture, e.g. fasterrcnn_resnet50_fpn, ssd300_vgg16, yolov8n ('list' lists them)")
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
        ULTRALYTICS_ARCHS,
        convert_torchvision_dense,
        convert_torchvision_rcnn,
        convert_torchvision_ssd,
        convert_ultralytics,
    )
    from detkit.config import model_config_entries
    from detkit.models.zoo import read_class_names
    from detkit.utils.checkpoint import save_checkpoint

    ultralytics = args.source == "ultralytics"
    torchvision_converters = {
        **dict.fromkeys(TORCHVISION_RCNN_ARCHS, convert_torchvision_rcnn),
        **dict.fromkeys(TORCHVISION_SSD_ARCHS, convert_torchvision_ssd),
        **dict.fromkeys(TORCHVISION_DENSE_ARCHS, convert_torchvision_dense),
    }
    archs = list(ULTRALYTICS_ARCHS) if ultralytics else list(torchvision_converters)
    if args.arch == "list":
        print("\n".join(archs))
        return 0
    if args.arch not in archs:
        raise CommandError(f"--arch {args.arch}: not a {args.source} architecture detkit converts "
                           f"(choose from {', '.join(archs)})")
    if ultralytics and args.coco_contiguous:
        raise CommandError("--coco-contiguous is for torchvision's 91-way COCO predictors; ultralytics' have 80 classes")
    if args.input is None or args.output is None:
        raise CommandError("give the source state dict and the checkpoint to write: IN.pth OUT.pth")
    state_dict = read_source_weights(args.input, args.source)
    try:
        if ultralytics:
            checkpoint = convert_ultralytics(state_dict, args.arch)
        else:
            convert = torchvision_converters[args.arch]
            checkpoint = convert(state_dict, args.arch, coco_contiguous=args.coco_contiguous)
    except (ValueError, KeyError) as error:  # the weights of another model: name the file
        raise CommandError(f"{args.input}: {one_line(error)}") from error
    meta = checkpoint["meta"]
    if ultralytics:  # ultralytics' COCO models list the 80 COCO classes in detkit's order
        class_names = read_class_names("coco") if meta["num_classes"] == 80 else None
        config, overrides = ultralytics_zoo_config(args.arch)
    else:
        class_names = read_class_names("coco") if args.coco_contiguous else None
        config, overrides = ZOO_CONFIG_OF_ARCH[args.arch], []
    config = args.config or config
    overrides = [*overrides, f"model.num_classes={meta['num_classes']}", f"model.class_names={class_names!r}"]
    cfg = load_config_arg(config, overrides)
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
