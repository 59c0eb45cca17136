"""Train a detector from a config (a file or a model-zoo name).

    detkit train CONFIG [key.path=value ...] [--resume PATH|auto] [--output-dir DIR] [--overwrite]
    torchrun --nproc_per_node 8 -m detkit.cli train CONFIG ...     # several GPUs (or CPU/gloo)
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port PORT \\
        --nproc_per_node 8 -m detkit.cli train CONFIG ...          # several machines

Overrides are Python literals (``train.max_iter=1000 optimizer.lr=0.01``). The resolved config is
written to ``OUTPUT_DIR/config.py``, the log to ``OUTPUT_DIR/log.txt``, the metrics to
``OUTPUT_DIR/metrics.jsonl`` (plot them with ``detkit plot``). ``--resume auto`` continues from
the newest checkpoint in the output folder (or starts fresh when there is none). A fresh run into
a folder that holds another run's checkpoints or metrics stops before any work, unless
``--overwrite`` (``train.overwrite=True``) is given, which deletes them first.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import split_overrides

HELP = "train a detector from a config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit train``."""
    parser.add_argument("config", help="config file (Python, detkit.config) or model-zoo name")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides")
    parser.add_argument("--resume", default=None, metavar="PATH|auto",
                        help="checkpoint to resume from, or 'auto' for the newest in the output dir")
    parser.add_argument("--output-dir", default=None, help="overrides train.output_dir")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="start over in an output dir that holds another run (deletes its "
                             "checkpoints and metrics; train.overwrite=True)")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Overrides may come before the config too."""
    split_overrides(parser, args, ["config"])


def run(args: argparse.Namespace) -> int:
    """Load the config with its overrides and train."""
    from detkit.cli.common import load_config_arg
    from detkit.engine.runner import run_training

    run_training(load_config_arg(args.config, args.overrides), output_dir=args.output_dir, resume=args.resume,
                 overwrite=args.overwrite)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit train``."""
    return parse_command_args("train", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit train``; returns the exit status."""
    return run_command("train", argv)
