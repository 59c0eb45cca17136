"""Detect objects in images, folders, videos and webcams; write annotated copies and a json.

    detkit infer CONFIG CHECKPOINT INPUT... --out DIR [--score-thresh 0.3]
        [--classes dog,person] [--device cpu] [--batch-size 8] [--detections-per-img 100]
        [--max-frames N] [--tta [--tta-flips F] [--tta-scales S] [--tta-merge nms|wbf]]
        [key.path=value ...]

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

* ``--score-thresh``: detections scoring below it are dropped; default 0.3
  (:data:`detkit.apis.predictor.DISPLAY_SCORE_THRESH`), a threshold for showing detections, not
  the model's evaluation threshold (0.05 or 0.005, which gives up to 100 boxes per image); the
  summary line prints the one used. ``--score-thresh 0.005`` (or 0) keeps all the model gives.
* A checkpoint ``none`` with a config whose model does not load its own weights (no
  ``pretrained = True``, as in the zoo's ``*_pretrained`` configs) prints a one-line warning: the
  detections come from random weights.

* ``--tta``: test-time augmentation (:class:`detkit.models.tta.TestTimeAugmentation`; the image
  and its horizontal flip, merged by class-wise NMS); ``--tta-flips``, ``--tta-scales`` and
  ``--tta-merge`` choose the views and the merge (as for ``detkit test``), each implies ``--tta``,
  and the summary says which views ran.
* Videos are written as H.264 (browser-playable) when PyAV (``pip install av``, the ``video``
  extra) or OpenCV can encode it, else MPEG-4 part 2 (mp4v); the summary names the codec used.

``--out`` is checked before the model is built: a file, a folder under a file, a folder that
cannot be created or written stops the command at once (exit status 2) naming it. An input that
cannot be read, a model that fails on an image (out of memory; a batch that fails is re-run one
image at a time) or returns NaN or inf for it, an annotated image that cannot be written: each
is reported and skipped; the others are still processed, the failures are listed at the end and
the exit status is 1. When ``predictions.json`` cannot be written at the end (a full disk, the
folder removed during the run), the predictions go to a new file in the temporary folder, whose
path is printed (exit status 1). A config or checkpoint that does not work stops the command at
once (exit status 2) with the reason (for a checkpoint that does not fit, the missing,
unexpected and mis-shaped keys).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import split_overrides

if TYPE_CHECKING:  # torch is imported inside run(), not at import (`--help` stays light)
    from detkit.apis.predictor import Predictor

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
                        default=None, help="drop detections below this score (default "
                        "0.3, for display; 0.005 or the model's own threshold keeps all it gives)")
    parser.add_argument("--classes", default=None,
                        help="keep only these classes, comma-separated names or ids")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=8, help="images or frames per model call")
    parser.add_argument("--detections-per-img", "--max-detections", dest="detections_per_img", type=int,
                        default=None, help="most detections per image")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="stop each video / webcam after this many frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    # -- test-time augmentation (--tta ...): the options of `detkit test`
    from detkit.cli.test import add_tta_arguments

    add_tta_arguments(parser)
    # -- end of test-time augmentation


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Positional ``key=value`` items that are not files are overrides."""
    split_overrides(parser, args, ["config", "checkpoint"], rest="inputs")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    # -- test-time augmentation: args.tta_options (None: none)
    from detkit.cli.test import tta_options

    tta_options(parser, args)
    # -- end of test-time augmentation


def _build_predictor(args: argparse.Namespace, score_thresh: float) -> Predictor:
    """:meth:`Predictor.from_config`, its :class:`UntrainedModelWarning` as one stderr line."""
    from detkit.apis.predictor import Predictor, UntrainedModelWarning
    from detkit.cli.common import resolve_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedModelWarning)
        predictor = Predictor.from_config(
            resolve_config(args.config), None if args.checkpoint.lower() == "none" else args.checkpoint,
            device=args.device, overrides=args.overrides, score_thresh=score_thresh,
            classes=args.classes, detections_per_img=args.detections_per_img,
            tta=False if getattr(args, "tta_options", None) is None else args.tta_options)
    for warning in caught:
        if issubclass(warning.category, UntrainedModelWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:  # the others as they would have come
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return predictor


def run(args: argparse.Namespace) -> int:
    """Check --out, build the predictor (errors stop here, exit 2), then run every input
    (failures: exit 1)."""
    from detkit.engine.run_folder import check_output_dir

    out_dir = check_output_dir(args.out, "--out", create=False)  # before the model is built

    from detkit.apis.predictor import DISPLAY_SCORE_THRESH
    from detkit.cli.infer_pipeline import run_inputs

    score_thresh = DISPLAY_SCORE_THRESH if args.score_thresh is None else args.score_thresh
    predictor = _build_predictor(args, score_thresh)
    start = time.perf_counter()
    report = run_inputs(predictor, args.inputs, out_dir, args.batch_size, args.max_frames,
                        not args.no_progress)
    seconds = time.perf_counter() - start
    where = report.predictions_path if report.predictions_path is not None else "nowhere (see below)"
    print(f"{report.images} images, {len(report.videos)} videos ({report.frames} frames) in "
          f"{seconds:.1f} s; {len(report.records)} detections (score >= {score_thresh:g}); results "
          f"in {out_dir}/, predictions in {where}")
    # -- test-time augmentation and the video codec: one line each
    if hasattr(predictor.model, "describe"):
        print(predictor.model.describe())
    for video, codec in zip(report.videos, getattr(report, "video_codecs", [])):
        print(f"video {video}: {codec}")
    # -- end
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
