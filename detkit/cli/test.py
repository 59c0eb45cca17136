"""Evaluate a trained detector on the test set of its config.

    detkit test CONFIG CHECKPOINT [key.path=value ...] [--out DIR] [--device cpu] [--plot]
                [--no-analysis] [--analysis-iou 0.5] [--analysis-score-thresh SCORE]
                [--tta] [--tta-flips none,horizontal] [--tta-scales 1,1.25] [--tta-merge nms|wbf]

CONFIG is a config file or a model-zoo name defining ``model`` and ``dataloader.test``
(``dataloader.evaluator`` or ``evaluator`` optional: without one the evaluator is chosen from the
test dataset). CHECKPOINT is read with ``torch.load(weights_only=True)``; its ``"model"`` entry is
the state dict (``none``: the model as the config builds it). Prints the evaluation table and
writes into ``--out`` (default ``<checkpoint dir>/eval``): the detections (``coco_results.json``
or ``voc_detections.json``), ``metrics.json`` and, with ``--plot``, precision-recall curves under
``pr_curves/`` (with CHECKPOINT ``none`` and no ``--out``, nothing is written).

The analysis is on by default (``--no-analysis`` turns it off): the per-class table (AP, AP50,
AP75 or the VOC APs, and precision, recall and F1 at each class's best-F1 score threshold; every
value a fraction in [0, 1]) is printed, and ``analysis/`` under the output folder receives
``per_class.json`` / ``.txt``, ``confusion_matrix.png`` / ``.json`` (rows ground truth, columns
prediction, background last), ``score_curves.json`` and ``precision_vs_score.png``,
``recall_vs_score.png``, ``f1_vs_score.png``. It matches boxes at ``--analysis-iou`` (default
0.5; VOC: the evaluator's IoU) with pycocotools' rules; the confusion matrix counts detections
with ``score >= --analysis-score-thresh`` (default: the best-F1 threshold of all classes).

``--tta`` evaluates with test-time augmentation (:class:`detkit.models.tta.TestTimeAugmentation`):
the image and its horizontal flip by default, merged by class-wise NMS; ``--tta-flips``,
``--tta-scales`` (network-input scales, 1 = the model's own size) and ``--tta-merge`` (``nms`` or
``wbf``, weighted box fusion) choose the views and the merge, and each implies ``--tta``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import split_overrides
from detkit.cli.eval import add_analysis_arguments, check_analysis_args

HELP = "evaluate a checkpoint on the test set of its config"
EPILOG = "Overrides are key.path=value (value parsed as a Python literal), e.g. dataloader.test.batch_size=4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit test``."""
    parser.add_argument("config", help="config file (.py) or model-zoo name")
    parser.add_argument("checkpoint", help="checkpoint file (a dict with a 'model' state dict), or 'none'")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <checkpoint dir>/eval)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when available)")
    parser.add_argument("--plot", action="store_true", help="also write precision-recall curves")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_analysis_arguments(parser)
    add_tta_arguments(parser)


# ---------------------------------------------------------------- test-time augmentation options
# (``detkit test`` and ``detkit infer``)

def add_tta_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tta``, ``--tta-flips``, ``--tta-scales``, ``--tta-merge``."""
    group = parser.add_argument_group("test-time augmentation")
    group.add_argument("--tta", action="store_true",
                       help="test-time augmentation: the image and its horizontal flip, merged by NMS")
    group.add_argument("--tta-flips", default=None, metavar="FLIPS",
                       help="views by flip, comma-separated: none, horizontal (default both; implies --tta)")
    group.add_argument("--tta-scales", default=None, metavar="SCALES",
                       help="network-input scales, comma-separated, e.g. 1,1.25 (default 1; implies --tta)")
    group.add_argument("--tta-merge", default=None, choices=("nms", "wbf"),
                       help="merge of the views: class-wise NMS or weighted box fusion (default nms; implies --tta)")


def tta_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict | None:
    """The :class:`~detkit.models.tta.TestTimeAugmentation` options the command line asks for
    (None: no augmentation); also stored as ``args.tta_options``. Values are checked when the
    model is wrapped (one-line errors naming ``--tta``)."""
    options: dict = {}
    if args.tta_flips is not None:
        options["flips"] = tuple(item.strip() for item in args.tta_flips.split(",") if item.strip())
    if args.tta_scales is not None:
        try:
            options["scales"] = tuple(float(item) for item in args.tta_scales.split(",") if item.strip())
        except ValueError:
            parser.error(f"--tta-scales must be comma-separated numbers, got {args.tta_scales!r}")
    if args.tta_merge is not None:
        options["merge"] = args.tta_merge
    args.tta_options = options if (args.tta or options) else None
    return args.tta_options


# ---------------------------------------------------------------- end of the test-time augmentation options


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Overrides anywhere; anything else left over is an error."""
    split_overrides(parser, args, ["config", "checkpoint"])
    check_analysis_args(parser, args)
    tta_options(parser, args)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and the files written."""
    from detkit.cli.common import load_config_arg
    from detkit.engine.evaluation import evaluate_config

    checkpoint = None if args.checkpoint.lower() == "none" else Path(args.checkpoint)
    out = Path(args.out) if args.out else (checkpoint.resolve().parent / "eval" if checkpoint else None)
    report = evaluate_config(load_config_arg(args.config, args.overrides), checkpoint, device=args.device,
                             output_dir=out, plot=args.plot, progress=not args.no_progress,
                             analysis=not args.no_analysis, analysis_iou=args.analysis_iou,
                             analysis_score_thresh=args.analysis_score_thresh, tta=args.tta_options)
    print(report.summary)
    if report.written:
        print("\nwrote " + ", ".join(str(p) for p in report.written))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit test``."""
    return parse_command_args("test", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit test``; returns the exit status."""
    return run_command("test", argv)
