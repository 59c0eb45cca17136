"""Offline evaluation of saved detections: COCO results json, or VOC-style text files.

COCO (pycocotools; every image of the annotation file is evaluated)::

    detkit eval --coco ANNOTATIONS.json RESULTS.json [--iou-type bbox|segm]

prints the standard 12-number COCO table and the per-class AP@[.5:.95].

VOC (detkit's implementation) on the Object-Detection-Metrics text format, one ``.txt`` per image:
ground truth ``class x y w h``, detections ``class confidence x y w h`` (absolute pixels, top-left
corner and size)::

    detkit eval --voc GT_DIR DET_DIR --iou 0.3 [--metric voc07|voc12|both] [--no-plus-one]
                [--voc-layout xywh|xyxy] [--voc-det-layout xywh|xyxy]

``--voc-layout`` names the four box columns of both folders (``xywh``: left top width height, the
default; ``xyxy``: left top right bottom), ``--voc-det-layout`` those of the detections only. The
layout is never guessed: a row it cannot describe is an error naming ``file:line``, and evidence of
the other layout is an error until the layout is named (then a warning).

``--plot DIR`` writes per-class precision-recall curves (PNG); ``--json FILE`` the metrics.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from detkit.cli import parse_command_args, run_command

HELP = "evaluate saved detections (COCO results json or VOC-style text files)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit eval``; exactly one of ``--coco`` / ``--voc``."""
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--coco", nargs=2, metavar=("ANNOTATIONS", "RESULTS"),
                      help="COCO annotation json and results json")
    mode.add_argument("--voc", nargs=2, metavar=("GT_DIR", "DET_DIR"),
                      help="folders of per-image .txt files (gt: 'class x y w h'; det: 'class conf x y w h')")
    parser.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox", help="COCO: what to evaluate")
    parser.add_argument("--iou", type=float, default=0.5, help="VOC: IoU threshold (>=), default 0.5")
    parser.add_argument("--metric", choices=("voc07", "voc12", "both"), default="both",
                        help="VOC: 11-point (voc07), all-point (voc12) or both")
    parser.add_argument("--no-plus-one", action="store_true",
                        help="VOC: continuous widths x2-x1 instead of VOC's x2-x1+1 pixel convention")
    parser.add_argument("--voc-layout", choices=("xywh", "xyxy"), default=None,
                        help="VOC: box columns of the gt and detection files: xywh (left top width height, "
                             "the default) or xyxy (left top right bottom)")
    parser.add_argument("--voc-det-layout", choices=("xywh", "xyxy"), default=None,
                        help="VOC: box columns of the detection files only (default: as --voc-layout)")
    parser.add_argument("--plot", metavar="DIR", help="write precision-recall curves (PNG) into DIR")
    parser.add_argument("--json", metavar="FILE", help="write the metrics as json")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that apply to one mode only are refused in the other."""
    if args.voc is None and (args.no_plus_one or args.metric != "both" or args.iou != 0.5
                             or args.voc_layout is not None or args.voc_det_layout is not None):
        parser.error("--iou, --metric, --no-plus-one, --voc-layout and --voc-det-layout apply to --voc only")
    if args.coco is None and args.iou_type != "bbox":
        parser.error("--iou-type applies to --coco only")
    if not 0.0 < args.iou <= 1.0:
        parser.error(f"--iou must be in (0, 1], got {args.iou}")


def run_coco(args: argparse.Namespace) -> dict[str, float]:
    """COCO evaluation: print the table and per-class AP, optionally plot; return the metrics."""
    from detkit.evaluation.coco_eval import (
        coco_pr_curves,
        evaluate_coco,
        format_per_class_table,
        load_coco,
        per_class_ap,
    )
    from detkit.evaluation.pr_curves import save_pr_curves

    annotations, results = args.coco
    coco_gt = load_coco(annotations)
    result = evaluate_coco(coco_gt, results, args.iou_type)
    print(f"COCO {args.iou_type} evaluation of {results} on {len(coco_gt.getImgIds())} images")
    print(result.table)
    print()
    print(format_per_class_table(result.per_class, title=f"{args.iou_type} AP"))
    if args.plot:
        ap50 = {result.names.get(c, str(c)): v for c, v in per_class_ap(result.coco_eval, 0.5).items()}
        paths = save_pr_curves(coco_pr_curves(result.coco_eval, 0.5, result.names), args.plot, ap50,
                               f"COCO {args.iou_type} @0.5")
        print(f"\nwrote {len(paths)} precision-recall plots into {args.plot}")
    return result.metrics()


def run_voc(args: argparse.Namespace) -> dict[str, float]:
    """VOC evaluation: print the per-class table, optionally plot; return the metrics."""
    from detkit.evaluation.pr_curves import save_pr_curves
    from detkit.evaluation.voc_eval import format_voc_table, read_txt_dirs, voc_evaluate

    gt_dir, det_dir = args.voc
    targets, predictions, class_names, _ = read_txt_dirs(gt_dir, det_dir, args.voc_layout, args.voc_det_layout)
    metrics = ("voc07", "voc12") if args.metric == "both" else (args.metric,)
    result = voc_evaluate(targets, predictions, class_names, iou_threshold=args.iou,
                          plus_one=not args.no_plus_one, metrics=metrics)
    print(f"{len(targets)} images, {len(class_names)} classes")
    print(format_voc_table(result))
    if args.plot:
        curves = {n: (c.recall, c.precision) for n, c in zip(class_names, result.curves) if c.num_gt}
        ap = dict(zip(class_names, result.ap[metrics[-1]]))
        paths = save_pr_curves(curves, args.plot, ap, f"{metrics[-1]} @{args.iou:g}")
        print(f"\nwrote {len(paths)} precision-recall plots into {args.plot}")
    return result.metrics()


def run(args: argparse.Namespace) -> int:
    """Evaluate, print, and write ``--json`` when asked."""
    metrics = run_coco(args) if args.coco else run_voc(args)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        # json has no NaN: classes without ground truth are written as null.
        path.write_text(json.dumps({k: None if math.isnan(v) else v for k, v in metrics.items()}, indent=1))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit eval``."""
    return parse_command_args("eval", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit eval``; returns the exit status."""
    return run_command("eval", argv)
