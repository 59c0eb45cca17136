"""Strip a training checkpoint down to the model: what ``detkit.load`` needs, nothing a resume needs.

    detkit strip runs/x/model_final.pth runs/x/model_weights.pth            # evaluated weights
    detkit strip runs/x/model_final.pth model_raw.pth --raw                 # the trained ones
    detkit strip runs/x/model_final.pth model_fp16.pth --half               # float16 tensors

Keeps ``model`` (the weights training evaluated: the EMA when ``train.ema`` was on; ``--raw``
keeps the trained weights, ``model_raw``, instead), ``model_config`` and ``class_names`` (so
``detkit.load(OUT)`` rebuilds the model), the resolved ``config`` text and ``meta`` (iteration,
best metric and what was stripped recorded in it). Drops the optimizer, scheduler, scaler, EMA
and RNG state. The file is read with ``weights_only=True`` and written atomically; the sizes
before and after are printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command

HELP = "strip a training checkpoint to the model weights (what detkit.load needs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit strip``."""
    parser.add_argument("checkpoint", help="training checkpoint (.pth) to read")
    parser.add_argument("output", help="stripped checkpoint to write (may be CHECKPOINT itself)")
    parser.add_argument("--raw", action="store_true",
                        help="keep the trained weights (model_raw) instead of the evaluated EMA weights")
    parser.add_argument("--half", action="store_true", help="store floating-point tensors as float16")


def _size(num_bytes: float) -> str:
    """``532 B``, ``16.2 KiB``, ``97.4 MiB``..."""
    if num_bytes < 1024:
        return f"{num_bytes:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        num_bytes /= 1024
        if num_bytes < 1024 or unit == "GiB":
            break
    return f"{num_bytes:.1f} {unit}"


def run(args: argparse.Namespace) -> int:
    """Read, strip, write atomically, print what was kept and the sizes."""
    from pathlib import Path

    from detkit.config import MODEL_CONFIG_KEY
    from detkit.engine.checkpoint import strip_checkpoint
    from detkit.utils.checkpoint import read_checkpoint, save_checkpoint

    source, target = Path(args.checkpoint), Path(args.output)
    checkpoint = read_checkpoint(source)
    before = source.stat().st_size
    stripped = strip_checkpoint(checkpoint, raw=args.raw, half=args.half, source=source)
    dropped = sorted(set(checkpoint) - set(stripped))
    save_checkpoint(stripped, target)
    after = target.stat().st_size
    weights = stripped["meta"]["model_weights"]
    print(f"wrote {target}: {len(stripped['model'])} tensors ({weights} weights"
          f"{', float16' if args.half else ''}); {_size(before)} -> {_size(after)} "
          f"({after / before:.0%}); dropped: {', '.join(dropped) or 'nothing'}")
    if MODEL_CONFIG_KEY not in stripped:
        print(f"note: {source} has no {MODEL_CONFIG_KEY}: detkit.load cannot rebuild the model from it; "
              "load the weights into a model built from its config")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit strip``."""
    return parse_command_args("strip", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit strip``; returns the exit status."""
    return run_command("strip", argv)
