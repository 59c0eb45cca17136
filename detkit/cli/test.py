"""Evaluate a trained detector on the test set of its config.

    detkit test CONFIG CHECKPOINT [key.path=value ...] [--out DIR] [--device cpu] [--plot]

CONFIG is a config file or a model-zoo name defining ``model`` and ``dataloader.test``
(``dataloader.evaluator`` or ``evaluator`` optional: without one the evaluator is chosen from the
test dataset). CHECKPOINT is read with ``torch.load(weights_only=True)``; its ``"model"`` entry is
the state dict (``none``: the model as the config builds it). Prints the evaluation table and
writes into ``--out`` (default ``<checkpoint dir>/eval``): the detections (``coco_results.json``
or ``voc_detections.json``), ``metrics.json`` and, with ``--plot``, precision-recall curves under
``pr_curves/`` (with CHECKPOINT ``none`` and no ``--out``, nothing is written).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import split_overrides

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


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Overrides anywhere; anything else left over is an error."""
    split_overrides(parser, args, ["config", "checkpoint"])


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and the files written."""
    from detkit.cli.common import load_config_arg
    from detkit.engine.evaluation import evaluate_config

    checkpoint = None if args.checkpoint.lower() == "none" else Path(args.checkpoint)
    out = Path(args.out) if args.out else (checkpoint.resolve().parent / "eval" if checkpoint else None)
    report = evaluate_config(load_config_arg(args.config, args.overrides), checkpoint, device=args.device,
                             output_dir=out, plot=args.plot, progress=not args.no_progress)
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
