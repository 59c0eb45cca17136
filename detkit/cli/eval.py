"""Offline evaluation of saved detections: COCO results json, ``detkit infer``'s predictions.json,
or VOC-style text files.

COCO (pycocotools; every image of the annotation file is evaluated)::

    detkit eval --coco ANNOTATIONS.json RESULTS.json [--iou-type bbox|segm] [--out DIR]

prints the standard 12-number COCO table and the per-class table (AP, AP50, AP75, and precision,
recall and F1 at each class's best-F1 score threshold; every value a fraction in [0, 1]).
RESULTS is a COCO results json (``image_id`` per detection) or the ``predictions.json`` that
``detkit infer`` writes (``file_name`` per detection): its file names are matched to the images'
``file_name`` (exactly, else by base name) and its categories by id, or by ``category_name`` when
the ids are not the annotation file's (said in one line); names that match no image or several,
and records of video frames, are an error.

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
Without ``--out`` nothing else is written. ``--out DIR`` writes ``DIR/metrics.json`` and the
analysis into ``DIR/analysis/`` (:mod:`detkit.evaluation.analysis_report`): ``per_class.json`` /
``.txt``, ``confusion_matrix.png`` / ``.json`` (rows ground truth, columns prediction, background
last), ``score_curves.json`` and ``precision_vs_score.png``, ``recall_vs_score.png``,
``f1_vs_score.png``. The analysis matches at ``--analysis-iou`` (default 0.5 for COCO, ``--iou``
for VOC); its confusion matrix counts detections with ``score >= --analysis-score-thresh``
(default: the best-F1 threshold of all classes). ``--no-analysis`` prints and writes the
evaluator's tables only. The analysis matches boxes: with ``--iou-type segm`` it is not made.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    parser.add_argument("--out", metavar="DIR", help="write metrics.json and the analysis (analysis/) into DIR")
    add_analysis_arguments(parser)


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-analysis``, ``--analysis-iou`` and ``--analysis-score-thresh`` (``detkit eval`` and ``test``)."""
    parser.add_argument("--no-analysis", action="store_true",
                        help="no per-class / confusion-matrix / score-threshold analysis")
    parser.add_argument("--analysis-iou", type=float, default=None, metavar="IOU",
                        help="IoU a match needs in the analysis (default 0.5; VOC: the evaluation's)")
    parser.add_argument("--analysis-score-thresh", type=float, default=None, metavar="SCORE",
                        help="the confusion matrix counts detections with score >= SCORE "
                             "(default: the best-F1 threshold of all classes)")


def check_analysis_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An analysis IoU in (0, 1]."""
    if args.analysis_iou is not None and not 0.0 < args.analysis_iou <= 1.0:
        parser.error(f"--analysis-iou must be in (0, 1], got {args.analysis_iou}")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that apply to one mode only are refused in the other."""
    if args.voc is None and (args.no_plus_one or args.metric != "both" or args.iou != 0.5
                             or args.voc_layout is not None or args.voc_det_layout is not None):
        parser.error("--iou, --metric, --no-plus-one, --voc-layout and --voc-det-layout apply to --voc only")
    if args.coco is None and args.iou_type != "bbox":
        parser.error("--iou-type applies to --coco only")
    if not 0.0 < args.iou <= 1.0:
        parser.error(f"--iou must be in (0, 1], got {args.iou}")
    check_analysis_args(parser, args)


def read_coco_results(annotations: str, results: str, coco_gt: Any) -> list[dict[str, Any]]:
    """The results file as COCO results: ``detkit infer`` records are mapped to the annotation file
    (the way it was done is printed in one line)."""
    from detkit.evaluation.coco_eval import read_results_json
    from detkit.evaluation.infer_predictions import infer_records_to_results, is_infer_predictions

    records = read_results_json(results)
    if not is_infer_predictions(records, results):
        return records
    records, notes = infer_records_to_results(records, coco_gt, results, annotations)
    for note in notes:
        print(note)
    return records


def run_coco(args: argparse.Namespace) -> tuple[dict[str, float], Any]:
    """COCO evaluation: print the table and the per-class table, optionally plot.

    Returns:
        The metrics, and the analysis (``None`` when not asked for or not possible).
    """
    from detkit.evaluation.analysis_report import analyze_coco_result
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
    records = read_coco_results(annotations, results, coco_gt)
    result = evaluate_coco(coco_gt, records, args.iou_type)
    print(f"COCO {args.iou_type} evaluation of {results} on {len(coco_gt.getImgIds())} images")
    print(result.table)
    print()
    analysis = None
    if not args.no_analysis and args.iou_type == "bbox":
        analysis = analyze_coco_result(result, records, iou_thresh=args.analysis_iou or 0.5,
                                       score_thresh=args.analysis_score_thresh)
        print(analysis.format_table())
    else:
        print(format_per_class_table(result.per_class, title=f"{args.iou_type} AP"))
        if not args.no_analysis:
            print("\n(no analysis for --iou-type segm: it matches boxes; run with --iou-type bbox)")
    if args.plot:
        ap50 = {result.names.get(c, str(c)): v for c, v in per_class_ap(result.coco_eval, 0.5).items()}
        paths = save_pr_curves(coco_pr_curves(result.coco_eval, 0.5, result.names), args.plot, ap50,
                               f"COCO {args.iou_type} @0.5")
        print(f"\nwrote {len(paths)} precision-recall plots into {args.plot}")
    return result.metrics(), analysis


def run_voc(args: argparse.Namespace) -> tuple[dict[str, float], Any]:
    """VOC evaluation: print the per-class tables, optionally plot.

    Returns:
        The metrics, and the analysis (``None`` when not asked for).
    """
    from detkit.evaluation.analysis_report import analyze_voc_result
    from detkit.evaluation.pr_curves import save_pr_curves
    from detkit.evaluation.voc_eval import format_voc_table, read_txt_dirs, voc_evaluate

    gt_dir, det_dir = args.voc
    targets, predictions, class_names, _ = read_txt_dirs(gt_dir, det_dir, args.voc_layout, args.voc_det_layout)
    metrics = ("voc07", "voc12") if args.metric == "both" else (args.metric,)
    result = voc_evaluate(targets, predictions, class_names, iou_threshold=args.iou,
                          plus_one=not args.no_plus_one, metrics=metrics)
    print(f"{len(targets)} images, {len(class_names)} classes")
    print(format_voc_table(result))
    analysis = None
    if not args.no_analysis:
        analysis = analyze_voc_result(result, targets, predictions, iou_thresh=args.analysis_iou,
                                      score_thresh=args.analysis_score_thresh)
        print()
        print(analysis.format_table())
    if args.plot:
        curves = {n: (c.recall, c.precision) for n, c in zip(class_names, result.curves) if c.num_gt}
        ap = dict(zip(class_names, result.ap[metrics[-1]]))
        paths = save_pr_curves(curves, args.plot, ap, f"{metrics[-1]} @{args.iou:g}")
        print(f"\nwrote {len(paths)} precision-recall plots into {args.plot}")
    return result.metrics(), analysis


def write_metrics(metrics: dict[str, float], path: Path) -> Path:
    """``metrics`` as json at ``path`` (NaN, for classes without ground truth, as null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: None if math.isnan(v) else v for k, v in metrics.items()}, indent=1))
    return path


def run(args: argparse.Namespace) -> int:
    """Evaluate, print, and write ``--json`` and ``--out`` when asked."""
    if args.out:
        from detkit.engine.run_folder import check_output_dir

        check_output_dir(Path(args.out), "--out")
    metrics, analysis = run_coco(args) if args.coco else run_voc(args)
    written = []
    if args.json:
        written.append(write_metrics(metrics, Path(args.json)))
    if args.out:
        written.append(write_metrics(metrics, Path(args.out) / "metrics.json"))
        if analysis is not None:
            written += analysis.write(Path(args.out) / "analysis")
    if args.out:
        print(f"\nwrote {len(written)} files into {args.out}: " + ", ".join(
            str(p.relative_to(args.out)) if Path(args.out) in p.parents else str(p) for p in written))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit eval``."""
    return parse_command_args("eval", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit eval``; returns the exit status."""
    return run_command("eval", argv)
