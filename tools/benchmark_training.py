"""Does it learn? Train a config from scratch, evaluate, and report the metric and the wall time.

    python tools/benchmark_training.py configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py
    python tools/benchmark_training.py CONFIG [key=value ...] --out DIR --metric bbox/AP50

The config's own schedule and evaluator are used (the shapes configs generate their data on first
use); the final evaluation is forced at the last iteration. Prints one line per evaluation and a
summary: metric, wall time (dataset generation included), iterations, seconds per iteration.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.config import load_config  # noqa: E402
from detkit.engine import read_metrics, run_training  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: train.output_dir + '_benchmark')")
    parser.add_argument("--metric", default="bbox/AP50", help="metric to report (default bbox/AP50)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = load_config(args.config, args.overrides)
    max_iter = int(cfg.train.max_iter)
    cfg.train.eval_period = max_iter  # one evaluation, at the end
    out = args.out or Path(str(cfg.train.output_dir) + "_benchmark")
    start = time.perf_counter()
    run_training(cfg, out)
    seconds = time.perf_counter() - start

    records = read_metrics(out / "metrics.jsonl")
    evaluations = [r for r in records if args.metric in r]
    if not evaluations:
        print(f"no evaluation with {args.metric} in {out / 'metrics.jsonl'}")
        return 1
    final = evaluations[-1]
    print(f"\n{args.config.name}: {args.metric} = {final[args.metric]:.4f} after {max_iter} iterations; "
          f"wall time {seconds / 60:.1f} min ({seconds / max_iter:.2f} s/iteration incl. data and evaluation), "
          f"{torch.get_num_threads()} threads")
    others = {k: round(v, 4) for k, v in final.items() if isinstance(v, float) and "/" in k and "-" not in k}
    print("all metrics:", others)
    return 0


if __name__ == "__main__":
    sys.exit(main())
