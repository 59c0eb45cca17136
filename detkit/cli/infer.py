"""Detect objects in images, folders, videos and webcams; write annotated copies and a json.

    detkit infer CONFIG CHECKPOINT INPUT... --out DIR [--score-thresh 0.3]
        [--classes dog,person] [--device cpu] [--batch-size 8] [--detections-per-img 100]
        [--max-frames N] [--backend torch|onnxruntime]
        [--slice SIZE [--overlap 0.2] [--no-slice-full] [--slice-merge nms|merge]]
        [--track [--track-high-thresh 0.5] [--track-low-thresh 0.1]
        [--track-new-thresh 0.6] [--track-buffer 30] [--track-per-class] [--trail-length 30]]
        [--tta [--tta-flips F] [--tta-scales S] [--tta-merge nms|wbf]]
        [key.path=value ...]

* ``CONFIG``: a config file or model-zoo name defining ``model``; ``CHECKPOINT``: a checkpoint
  whose ``"model"`` entry is the state dict, or ``none`` for a config whose model loads its own
  weights. With ``--backend onnxruntime`` the model runs in ONNX Runtime: ``CONFIG`` may be a
  ``.onnx`` file written by ``detkit export`` (``CHECKPOINT`` ``none``; class names and
  preprocessing come from its metadata), or a config that is exported to a temporary file first.
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
* ``--slice SIZE``: sliced inference (:mod:`detkit.apis.slicing`), for small objects in large
  images: the model runs on tiles of SIZE pixels overlapping by ``--overlap`` (a fraction in
  [0, 1), default 0.2) and, unless ``--no-slice-full``, on the whole image too; the detections
  are merged across tile borders by class-wise NMS (``--slice-merge nms``, the default) or by
  merging overlapping boxes of a class into their union (``merge``). Videos are sliced frame by
  frame.
* A checkpoint ``none`` with a config whose model does not load its own weights (no
  ``pretrained = True``, as in the zoo's ``*_pretrained`` configs) prints a one-line warning: the
  detections come from random weights.

* ``--track`` (videos and webcams): a :class:`detkit.apis.tracking.ByteTracker` per video follows
  the objects across frames; each video record gets a ``"track_id"``, only tracked detections
  are recorded and drawn (in their track's colour, ``#id`` in the label, over a trail of their
  last ``--trail-length`` centres). The detector then keeps detections down to
  ``--track-low-thresh`` (the tracker's second association uses them; ``--score-thresh`` is not
  used for videos); images are not tracked and keep ``--score-thresh``.
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
    from detkit.cli.infer_pipeline import Tracking

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
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="run the model in PyTorch (default) or ONNX Runtime: CONFIG may then be a "
                             ".onnx file from `detkit export` (CHECKPOINT 'none'); a config is exported first")
    parser.add_argument("--batch-size", type=int, default=8, help="images or frames per model call")
    parser.add_argument("--detections-per-img", "--max-detections", dest="detections_per_img", type=int,
                        default=None, help="most detections per image")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="stop each video / webcam after this many frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-fuse", dest="fuse", action="store_false",
                        help="run the model as built: no batch norms folded into the convolutions, "
                        "no channels-last (the default fast path, detkit.models.fuse)")
    add_slice_arguments(parser)
    add_tracking_arguments(parser)
    # -- test-time augmentation (--tta ...): the options of `detkit test`
    from detkit.cli.test import add_tta_arguments

    add_tta_arguments(parser)
    # -- end of test-time augmentation


# --- sliced inference (--slice): detkit.apis.slicing --------------------------------------------
def add_slice_arguments(parser: argparse.ArgumentParser) -> None:
    """``--slice SIZE --overlap FRACTION --no-slice-full --slice-merge nms|merge``."""
    group = parser.add_argument_group("sliced inference (small objects in large images)")
    group.add_argument("--slice", dest="slice_size", type=int, default=None, metavar="SIZE",
                       help="run the model on overlapping tiles of SIZE pixels and merge them")
    group.add_argument("--overlap", dest="slice_overlap", type=float, default=0.2, metavar="FRACTION",
                       help="fraction of a tile shared with its neighbour, in [0, 1) (default 0.2)")
    group.add_argument("--no-slice-full", dest="slice_full_image", action="store_false",
                       help="do not also run the model on the whole image")
    group.add_argument("--slice-merge", choices=("nms", "merge"), default="nms",
                       help="merge the tiles' detections by class-wise NMS (default) or by merging "
                       "overlapping boxes of a class into their union")


def check_slice_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One-line errors naming the option: ``--slice`` > 0, ``--overlap`` in [0, 1)."""
    if args.slice_size is not None and args.slice_size <= 0:
        parser.error(f"--slice must be a tile size in pixels > 0, got {args.slice_size}")
    if not 0.0 <= args.slice_overlap < 1.0:
        parser.error(f"--overlap must be a fraction in [0, 1), got {args.slice_overlap:g}")
    given = [option for option, value, default in (
        ("--overlap", args.slice_overlap, 0.2), ("--no-slice-full", args.slice_full_image, True),
        ("--slice-merge", args.slice_merge, "nms")) if value != default]
    if args.slice_size is None and given:
        parser.error(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --slice SIZE")


def slice_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``slice_*`` keywords of :class:`~detkit.apis.predictor.Predictor`."""
    return {"slice_size": args.slice_size, "slice_overlap": args.slice_overlap,
            "slice_full_image": args.slice_full_image, "slice_merge": args.slice_merge}
# --- end of sliced inference ---------------------------------------------------------------------


# --- tracking (--track) ---------------------------------------------------------------------------

def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--track`` options: ByteTrack on videos and webcams."""
    group = parser.add_argument_group("tracking (videos and webcams)")
    group.add_argument("--track", action="store_true",
                       help="follow objects across video frames (ByteTrack): track_id in the json, "
                            "tracks drawn in stable colours with trails")
    group.add_argument("--track-high-thresh", type=float, default=0.5,
                       help="detections scoring at least this are matched first (default 0.5)")
    group.add_argument("--track-low-thresh", type=float, default=0.1,
                       help="lowest score the tracker uses, in its second association (default 0.1)")
    group.add_argument("--track-new-thresh", type=float, default=0.6,
                       help="an unmatched detection scoring at least this starts a track (default 0.6)")
    group.add_argument("--track-buffer", type=int, default=30,
                       help="frames a lost track waits to be found again (default 30)")
    group.add_argument("--track-per-class", action="store_true",
                       help="match tracks only to detections of their own class")
    group.add_argument("--trail-length", type=int, default=30,
                       help="centres drawn behind each track (default 30; 0: no trails)")


def tracking_setup(args: argparse.Namespace, score_thresh: float) -> Tracking | None:
    """What ``--track`` asks for, checked (a bad value is a one-line error naming the option), or
    None without ``--track``. Called before the model is built; images keep ``score_thresh``."""
    if not args.track:
        return None
    from detkit.apis.tracking import ByteTracker
    from detkit.cli.infer_pipeline import Tracking

    options = {"high_thresh": args.track_high_thresh, "low_thresh": args.track_low_thresh,
               "new_track_thresh": args.track_new_thresh, "track_buffer": args.track_buffer,
               "per_class": args.track_per_class}
    names = {"high_thresh": "--track-high-thresh", "low_thresh": "--track-low-thresh",
             "new_track_thresh": "--track-new-thresh", "track_buffer": "--track-buffer"}
    try:
        ByteTracker(**options)
    except ValueError as error:
        message = str(error).replace("ByteTracker: ", "")
        for keyword, option in names.items():
            message = message.replace(keyword, option)
        raise ValueError(message) from None
    if args.trail_length < 0:
        raise ValueError(f"--trail-length must be >= 0, got {args.trail_length}")
    return Tracking(options, args.trail_length, image_score_thresh=score_thresh)

# --- end of tracking ------------------------------------------------------------------------------


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Positional ``key=value`` items that are not files are overrides."""
    split_overrides(parser, args, ["config", "checkpoint"], rest="inputs")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    check_slice_args(parser, args)
    # -- test-time augmentation: args.tta_options (None: none)
    from detkit.cli.test import tta_options

    tta_options(parser, args)
    # -- end of test-time augmentation


def _build_predictor(args: argparse.Namespace, score_thresh: float) -> Predictor:
    """:meth:`Predictor.from_config`, its :class:`UntrainedModelWarning` as one stderr line."""
    from detkit.apis.predictor import Predictor, UntrainedModelWarning
    from detkit.cli.common import CommandError, resolve_config

    backend = getattr(args, "backend", "torch")
    tta = False if getattr(args, "tta_options", None) is None else args.tta_options
    if backend == "onnxruntime" and tta is not False:
        raise CommandError("--tta runs with --backend torch only (an exported graph holds one forward pass)")
    options = dict(score_thresh=score_thresh, classes=args.classes, detections_per_img=args.detections_per_img,
                   **slice_options(args), tta=tta)
    if backend == "onnxruntime" and str(args.config).endswith(".onnx"):  # an exported file
        if args.checkpoint.lower() != "none":
            raise CommandError(f"{args.config} is an ONNX file: give the checkpoint 'none'")
        return Predictor(args.config, backend=backend, device=args.device, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedModelWarning)
        predictor = Predictor.from_config(
            resolve_config(args.config), None if args.checkpoint.lower() == "none" else args.checkpoint,
            device=args.device, overrides=args.overrides, score_thresh=score_thresh,
            classes=args.classes, detections_per_img=args.detections_per_img, **slice_options(args),
            tta=False if getattr(args, "tta_options", None) is None else args.tta_options,
            fuse=getattr(args, "fuse", True))
    for warning in caught:
        if issubclass(warning.category, UntrainedModelWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:  # the others as they would have come
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if backend == "onnxruntime":  # the config's model, exported to a temporary .onnx file
        return Predictor(predictor.model, backend=backend, device=args.device, **options)
    return predictor


def run(args: argparse.Namespace) -> int:
    """Check --out, build the predictor (errors stop here, exit 2), then run every input
    (failures: exit 1)."""
    from detkit.engine.run_folder import check_output_dir

    out_dir = check_output_dir(args.out, "--out", create=False)  # before the model is built

    from detkit.apis.predictor import DISPLAY_SCORE_THRESH
    from detkit.cli.infer_pipeline import run_inputs

    score_thresh = DISPLAY_SCORE_THRESH if args.score_thresh is None else args.score_thresh
    tracking = tracking_setup(args, score_thresh)
    predictor = _build_predictor(args, score_thresh if tracking is None else
                                 min(score_thresh, tracking.detector_score_thresh))
    start = time.perf_counter()
    report = run_inputs(predictor, args.inputs, out_dir, args.batch_size, args.max_frames,
                        not args.no_progress, tracking=tracking)
    seconds = time.perf_counter() - start
    if predictor.slicing is not None:
        print(f"sliced: tiles of {args.slice_size} px, overlap {args.slice_overlap:g}, "
              f"{'with' if args.slice_full_image else 'without'} the full image, merged by "
              f"{args.slice_merge}")
    where = report.predictions_path if report.predictions_path is not None else "nowhere (see below)"
    kept = f"score >= {score_thresh:g}" if tracking is None else \
        f"images: score >= {score_thresh:g}; videos: the tracked ones"
    print(f"{report.images} images, {len(report.videos)} videos ({report.frames} frames) in "
          f"{seconds:.1f} s; {len(report.records)} detections ({kept}); results "
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
