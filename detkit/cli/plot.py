"""Plot the loss and mAP curves of training runs from their ``metrics.jsonl`` logs.

    detkit plot RUN_DIR_OR_METRICS_JSONL [...] [--out DIR] [--keys loss_cls ...]

Writes ``losses.png`` (every loss term and the total against the iteration), ``lr.png`` and,
when the log has evaluation records, ``metrics.png`` (the evaluation metrics, e.g. bbox/AP and
bbox/AP50). Several runs are drawn on the same axes, labelled by their folder name. Uses
matplotlib when it is installed, else draws with OpenCV.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command

HELP = "plot the loss, lr and metric curves of training runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit plot``."""
    parser.add_argument("runs", nargs="+", help="run folders or metrics.jsonl files")
    parser.add_argument("--out", default=None, help="output folder (default: first run's)")
    parser.add_argument("--keys", nargs="*", default=None, help="names to plot (default: all)")


def run(args: argparse.Namespace) -> int:
    """Write the plots and print their paths."""
    from detkit.cli.log_plots import plot_logs

    for path in plot_logs(args.runs, args.out, args.keys):
        print(path)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit plot``."""
    return parse_command_args("plot", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit plot``; returns the exit status."""
    return run_command("plot", argv)
