"""Export a detector for deployment: ONNX (post-processing inside the graph) or TorchScript.

    detkit export runs/x/model_final.pth --format onnx --dynamic --out yolo.onnx
    detkit export yolov3_tiny_coco_pretrained --format onnx --image-size 320 480
    detkit export configs/ssd/ssd300_vgg16_120e_coco.py --checkpoint ssd.pth --format torchscript

``MODEL`` is a self-contained checkpoint (``.pth``/``.pt`` written by detkit: it carries its
config and class names), or a config file / model-zoo name, built as ``detkit.build_model`` does
(a ``*_pretrained`` zoo config loads its own weights; otherwise give ``--checkpoint``, or the
export holds untrained weights, which is said on stderr). ``key.path=value`` overrides apply to a
config.

The file's graph takes ``images [B, 3, H, W]`` float32 RGB in [0, 1] at the network input size
and returns ``boxes [B, K, 4]``, ``scores [B, K]``, ``labels [B, K]``, ``num_detections [B]``
(``K`` = the head's ``detections_per_img``; rows past ``num_detections`` are padding); the ONNX
file's metadata carries the class names and the preprocessing (docs in detkit/export/module.py).
``--dynamic``: a dynamic batch, and height and width where the architecture allows (YOLOv3: any
multiple of 32; SSD is fixed at its input size, which the command says). Run an ONNX file with
``detkit infer MODEL.onnx none IMAGES --backend onnxruntime --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command

HELP = "export a detector to ONNX (NMS inside) or TorchScript"
CHECKPOINT_SUFFIXES = (".pth", ".pt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit export``."""
    parser.add_argument("model", help="a detkit checkpoint (.pth), or a config file / model-zoo name")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (with a config)")
    parser.add_argument("--checkpoint", default=None, help="weights to load into a model built from a config")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format (onnx)")
    parser.add_argument("--dynamic", action="store_true",
                        help="ONNX: dynamic batch, and height/width where the architecture allows it")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18, at least 16)")
    parser.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIDE",
                        help="input size H [W] of the export (default: the model's input size)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch of the example input (fixed unless --dynamic)")
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="file to write (default: MODEL's name with .onnx / .torchscript)")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors: a bad ``--image-size``, overrides given with a checkpoint file."""
    if args.image_size is not None and len(args.image_size) not in (1, 2):
        parser.error("--image-size takes one side or H W")
    if args.overrides and args.model.endswith(CHECKPOINT_SUFFIXES):
        parser.error("KEY=VALUE overrides apply to a config, not to a checkpoint file")
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        parser.error(f"unexpected arguments {bad} (overrides are KEY=VALUE)")


def _load_model(args: argparse.Namespace) -> object:
    from detkit.model_zoo import build_model, load
    from detkit.utils.checkpoint import load_weights

    if args.model.endswith(CHECKPOINT_SUFFIXES):
        return load(args.model)
    from detkit.cli.common import resolve_config

    config = resolve_config(args.model)
    model = build_model(config, args.overrides)
    if args.checkpoint is not None:
        load_weights(model, args.checkpoint, strict=True, drop_ddp_prefix=True)
    elif not _loads_own_weights(config):
        print(f"detkit export: note: {args.model} is exported with untrained weights (no --checkpoint and "
              "no `pretrained = True` in the config)", file=sys.stderr)
    return model


def _loads_own_weights(config: object) -> bool:
    from detkit.config import load_config

    return bool(load_config(config).get("pretrained", False))


def run(args: argparse.Namespace) -> int:
    """Build or load the model, export it, print what was written."""
    from pathlib import Path

    from detkit.export import DEFAULT_OPSET, export
    from detkit.export.module import export_module_for

    model = _load_model(args)
    size = None if args.image_size is None else tuple(args.image_size * (2 if len(args.image_size) == 1 else 1))
    suffix = ".onnx" if args.format == "onnx" else ".torchscript"
    out = Path(args.out) if args.out else Path(Path(args.model).stem + suffix)
    wrapper = export_module_for(model, size)  # checks the size early (one-line errors)
    if args.dynamic and not wrapper.dynamic_size:
        print(f"detkit export: {type(model).__name__} has a fixed input size: exported at {wrapper.input_size} "
              "with a dynamic batch only")
    if args.dynamic and args.format == "torchscript":
        print("detkit export: --dynamic is for ONNX; a TorchScript trace keeps the batch free, not the size")
    path = export(model, out, args.format, image_size=size, batch_size=args.batch_size, dynamic=args.dynamic,
                  opset=args.opset or DEFAULT_OPSET)
    axes = "batch, height and width" if args.dynamic and wrapper.dynamic_size else "batch" if args.dynamic else "none"
    print(f"wrote {path} ({args.format}, input [{args.batch_size}, 3, {wrapper.input_size[0]}, "
          f"{wrapper.input_size[1]}], dynamic: {axes})")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit export``."""
    return parse_command_args("export", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit export``; returns the exit status."""
    return run_command("export", argv)
