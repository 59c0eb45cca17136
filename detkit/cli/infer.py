"""Detect objects in images, folders, videos and webcams; write annotated copies and a json.

    detkit infer CONFIG CHECKPOINT INPUT... --out DIR [--score-thresh 0.3]
        [--classes dog,person] [--device cpu] [--batch-size 8] [--detections-per-img 100]
        [--max-frames N] [key.path=value ...]

* ``CONFIG``: a config file or model-zoo name defining ``model``; ``CHECKPOINT``: a checkpoint
  whose ``"model"`` entry is the state dict, or ``none`` for a config whose model loads its own
  weights.
* ``INPUT``: image files, folders (their top-level images and videos, not sub-folders), glob
  patterns (quote them; ``**`` recurses), video files (.mp4 .avi .mov .mkv), or a webcam index
  (``0``; runs until Ctrl+C or ``--max-frames``).
* Writes into ``--out``: each image annotated under its own name, each video annotated at its
  frame rate and size (``NAME.mp4``, or ``NAME.avi`` when OpenCV has no MPEG-4 encoder), and
  ``predictions.json``: COCO-style results, one entry per detection, ``{"file_name",
  "frame_index" (videos), "bbox" [x, y, w, h], "score", "category_id", "category_name"}``, plus
  ``"segmentation"`` (RLE) and ``"landmarks"`` when the model gives them. ``category_id`` is the
  label, or the model's ``label_to_category_id[label]`` when it has that mapping.

An input that cannot be read is reported and skipped; the others are still processed, the
failures are listed at the end and the exit status is 1. A config or checkpoint that does not
work stops the command at once (exit status 2) with the reason (for a checkpoint that does not
fit, the missing, unexpected and mis-shaped keys).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import split_overrides

HELP = "run a detector on images, folders, globs, videos and webcams"
EPILOG = ("Config overrides are key.path=value (value parsed as a Python literal), e.g. "
          "model.num_classes=3. Exit status: 0 all inputs done, 1 some inputs failed, "
          "2 bad config, checkpoint or arguments.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit infer``."""
    parser.add_argument("config", help="config file (.py) or model-zoo name defining 'model'")
    parser.add_argument("checkpoint", help="checkpoint with a 'model' state dict, or 'none'")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image, folder, glob, video (.mp4 .avi .mov .mkv) or webcam index")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--score-thresh", "--score-threshold", dest="score_thresh", type=float,
                        default=None, help="drop detections below this score")
    parser.add_argument("--classes", default=None,
                        help="keep only these classes, comma-separated names or ids")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=8, help="images or frames per model call")
    parser.add_argument("--detections-per-img", "--max-detections", dest="detections_per_img", type=int,
                        default=None, help="most detections per image")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="stop each video / webcam after this many frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Positional ``key=value`` items that are not files are overrides."""
    split_overrides(parser, args, ["config", "checkpoint"], rest="inputs")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")


def run(args: argparse.Namespace) -> int:
    """Build the predictor (errors stop here, exit 2), then run every input (failures: exit 1)."""
    from detkit.apis.predictor import Predictor
    from detkit.cli.common import resolve_config
    from detkit.cli.infer_pipeline import PREDICTIONS_FILE, run_inputs

    predictor = Predictor.from_config(
        resolve_config(args.config), None if args.checkpoint.lower() == "none" else args.checkpoint,
        device=args.device, overrides=args.overrides, score_thresh=args.score_thresh,
        classes=args.classes, detections_per_img=args.detections_per_img)
    out_dir = Path(args.out)
    start = time.perf_counter()
    report = run_inputs(predictor, args.inputs, out_dir, args.batch_size, args.max_frames,
                        not args.no_progress)
    seconds = time.perf_counter() - start
    print(f"{report.images} images, {len(report.videos)} videos ({report.frames} frames) in "
          f"{seconds:.1f} s; {len(report.records)} detections; results in {out_dir}/ "
          f"({PREDICTIONS_FILE})")
    if report.failures:
        print(f"{len(report.failures)} input(s) failed:", file=sys.stderr)
        for source, reason in report.failures:
            print(f"  {source}: {reason}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit infer``."""
    return parse_command_args("infer", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit infer``; returns the exit status."""
    return run_command("infer", argv)
