"""Test-time augmentation's effect on AP: a config's test split evaluated without and with TTA.

Usage::

    python tools/benchmark_tta.py CONFIG CHECKPOINT [key.path=value ...] [--flips none,horizontal]
        [--scales 1] [--merges nms,wbf] [--extra-scales 1,1.25] [--device cpu] [--threads 2]

Evaluates ``CONFIG``'s ``dataloader.test`` (the shapes configs: the shapes validation split) with
the checkpoint's weights, first as it is, then wrapped in
:class:`detkit.models.tta.TestTimeAugmentation` with ``--flips`` / ``--scales`` and each merge of
``--merges``, and (with ``--extra-scales``) once more with the image flipped at each of those
network-input scales (merged by the first of ``--merges``), all in one run. Prints one line per
evaluation (bbox AP, AP50, AP75, APs, wall time) and the differences to the plain evaluation.
Nothing is downloaded: the checkpoint is a path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.config import instantiate, load_config  # noqa: E402
from detkit.engine.evaluation import evaluate_config  # noqa: E402
from detkit.utils.checkpoint import load_weights  # noqa: E402

METRICS = ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(item) for item in text.split(",") if item.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    parser.add_argument("--flips", type=_names, default=("none", "horizontal"), help="TTA flips (default none,horizontal)")
    parser.add_argument("--scales", type=_floats, default=(1.0,), help="TTA network-input scales (default 1)")
    parser.add_argument("--merges", type=_names, default=("nms", "wbf"), help="merges to measure (default nms,wbf)")
    parser.add_argument("--extra-scales", type=_floats, default=None,
                        help="also measure flips at these scales, e.g. 1,1.25 (merged by the first merge)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = load_config(args.config, args.overrides)
    model = instantiate(cfg.model, "model")
    load_weights(model, args.checkpoint, strict=True)
    runs: list[tuple[str, Any]] = [("no TTA", None)]
    runs += [(f"TTA flips {'+'.join(args.flips)}, scales {','.join(f'{s:g}' for s in args.scales)}, {merge}",
              dict(flips=args.flips, scales=args.scales, merge=merge)) for merge in args.merges]
    if args.extra_scales:
        runs.append((f"TTA flips {'+'.join(args.flips)}, scales {','.join(f'{s:g}' for s in args.extra_scales)}, "
                     f"{args.merges[0]}", dict(flips=args.flips, scales=args.extra_scales, merge=args.merges[0])))

    print(f"{args.config.name} + {args.checkpoint.name}: {len(instantiate(cfg.dataloader.test).dataset)} test images, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    results = []
    for name, tta in runs:
        start = time.perf_counter()
        metrics = evaluate_config(cfg, model=model, device=args.device, progress=False, tta=tta)
        seconds = time.perf_counter() - start
        results.append((name, metrics))
        values = "  ".join(f"{key.split('/')[1]} {metrics.get(key, float('nan')):.4f}" for key in METRICS)
        print(f"{name:<52} {values}  ({seconds:.0f} s)", flush=True)
    base = results[0][1]
    for name, metrics in results[1:]:
        deltas = "  ".join(f"{key.split('/')[1]} {metrics[key] - base[key]:+.4f}" for key in METRICS if key in metrics)
        print(f"{name:<52} vs no TTA: {deltas}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
