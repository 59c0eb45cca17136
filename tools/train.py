"""Train a detector from a config file.

Usage::

    python tools/train.py CONFIG [key.path=value ...] [--resume PATH|auto] [--output-dir DIR]
    torchrun --nproc_per_node 8 tools/train.py CONFIG ...          # several GPUs (or CPU/gloo)
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port PORT \\
        --nproc_per_node 8 tools/train.py CONFIG ...               # several machines

Overrides are Python literals (``train.max_iter=1000 optimizer.lr=0.01``). The resolved config is
written to ``OUTPUT_DIR/config.py``, the log to ``OUTPUT_DIR/log.txt``, the metrics to
``OUTPUT_DIR/metrics.jsonl`` (plot them with tools/plot_logs.py). ``--resume auto`` continues from
the newest checkpoint in the output folder (or starts fresh when there is none).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from detkit.config import load_config  # noqa: E402
from detkit.engine.runner import run_training  # noqa: E402
from detkit.utils.distributed import destroy_distributed  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file (Python, detkit.config)")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    parser.add_argument("--resume", default=None, metavar="PATH|auto",
                        help="checkpoint to resume from, or 'auto' for the newest in the output dir")
    parser.add_argument("--output-dir", default=None, help="overrides train.output_dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load the config with its overrides and train."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    try:
        run_training(cfg, output_dir=args.output_dir, resume=args.resume)
    finally:
        destroy_distributed()


if __name__ == "__main__":
    main()
