"""End-to-end video fps (read + model + draw + write, tools/infer.py's pipeline) vs model-only fps.

Usage::

    python tools/benchmark_video.py CONFIG CHECKPOINT [--video CLIP] [--frames 120]
        [--size 640x480] [--batch-size 8] [--device cpu] [--repeat 2] [key.path=value ...]

``CHECKPOINT`` may be ``none`` (a config whose model loads its own weights). Without ``--video`` a
synthetic clip (moving rectangles) of ``--frames`` frames at ``--size`` is written to a temporary
folder. Both measurements use the same frames and the same :class:`~detkit.apis.Predictor`:

* model-only: the frames decoded into memory first, then only ``predictor(batch)`` is timed
  (BGR -> tensor conversion, the model, filtering of its outputs);
* end-to-end: ``tools/infer.py``'s video path (threaded decode, the model, drawing and encoding in
  a writer thread, the json records), from opening the file to the last frame written.

Each is run ``--repeat`` times after one warm-up batch, and the best run counts (the machine may be
shared). The target is end-to-end >= 90% of model-only. On a CPU-only machine the model and the
reader/writer threads share the cores: set ``OMP_NUM_THREADS`` below the core count to leave one
for decoding and drawing (PyTorch's spinning workers suffer most from oversubscription). Example
with the test toy detector::

    PYTHONPATH=tests python tools/benchmark_video.py tests/fixtures/configs/apis/toy_detector.py none \\
        model.depth=4 model.width=16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/infer.py, imported as ``infer``

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import infer  # noqa: E402
from detkit.apis.predictor import CheckpointError, Predictor  # noqa: E402
from detkit.apis.video import VideoReader  # noqa: E402
from detkit.config import ConfigError  # noqa: E402

TARGET_RATIO = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="detkit config file (.py) defining 'model'")
    parser.add_argument("checkpoint", help="checkpoint with a 'model' state dict, or 'none'")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--video", help="clip to use (default: a synthetic one)")
    parser.add_argument("--frames", type=int, default=120, help="frames to use (default 120)")
    parser.add_argument("--size", default="640x480", help="WxH of the synthetic clip")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; best counts")
    return parser.parse_args(argv)


def write_synthetic_clip(path: Path, frames: int, size: tuple[int, int], fps: float = 30.0) -> Path:
    """A clip of ``frames`` frames of ``size`` (width, height): rectangles moving on noise."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        path = path.with_suffix(".avi")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    for i in range(frames):
        frame = background.copy()
        for k in range(3):
            x = int((i * (3 + 2 * k) + k * width // 3) % max(1, width - width // 5))
            y = int(height * (0.2 + 0.25 * k))
            cv2.rectangle(frame, (x, y), (x + width // 5, y + height // 6),
                          (60 + 60 * k, 200 - 50 * k, 120), cv2.FILLED)
        writer.write(frame)
    writer.release()
    return path


def model_only_fps(predictor: Predictor, clip: Path, frames: int, batch_size: int) -> float:
    """Frames per second of ``predictor`` alone on the clip's frames, held in memory."""
    with VideoReader(clip, max_frames=frames) as reader:
        decoded = list(reader)
    predictor(decoded[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    for begin in range(0, len(decoded), batch_size):
        predictor(decoded[begin:begin + batch_size], batch_size=batch_size)
    return len(decoded) / (time.perf_counter() - start)


def end_to_end_fps(predictor: Predictor, clip: Path, frames: int, batch_size: int,
                   out_dir: Path) -> float:
    """Frames per second of tools/infer.py's video path: decode, model, draw, encode, records."""
    with VideoReader(clip, max_frames=batch_size) as reader:  # warm-up batch
        predictor(list(reader), batch_size=batch_size)
    report = infer.Report()
    item = infer.InputItem("video", path=clip)
    start = time.perf_counter()
    infer.run_video(predictor, item, infer.OutputNames(out_dir, [clip]), report, batch_size, frames,
                    progress=False)
    seconds = time.perf_counter() - start
    if report.failures:
        raise RuntimeError(f"the end-to-end run failed: {report.failures}")
    return report.frames / seconds


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them with their ratio; returns the exit status."""
    args = parse_args(argv)
    try:
        predictor = Predictor.from_config(
            args.config, None if args.checkpoint.lower() == "none" else args.checkpoint,
            device=args.device, overrides=args.overrides, score_thresh=args.score_threshold)
    except (CheckpointError, ConfigError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="detkit-bench-") as folder:
        if args.video:
            clip = Path(args.video)
        else:
            width, height = (int(v) for v in args.size.lower().split("x"))
            clip = write_synthetic_clip(Path(folder) / "clip.mp4", args.frames, (width, height))
        with VideoReader(clip, max_frames=args.frames) as reader:
            frames = reader.frame_count or args.frames
            description = f"{clip.name}: {frames} frames {reader.frame_size[0]}x{reader.frame_size[1]}"
        model_fps, pipeline_fps = 0.0, 0.0
        for run in range(max(1, args.repeat)):
            model_fps = max(model_fps, model_only_fps(predictor, clip, frames, args.batch_size))
            out_dir = Path(folder) / f"out{run}"
            pipeline_fps = max(pipeline_fps, end_to_end_fps(predictor, clip, frames,
                                                            args.batch_size, out_dir))
    ratio = pipeline_fps / model_fps
    verdict = "meets" if ratio >= TARGET_RATIO else "below"
    print(f"{type(predictor.model).__name__} on {predictor.device}, {description}, "
          f"batch {args.batch_size}, best of {max(1, args.repeat)}")
    print(f"model-only fps: {model_fps:8.1f}   (frames in memory, predictor calls only)")
    print(f"end-to-end fps: {pipeline_fps:8.1f}   (decode + model + draw + encode, tools/infer.py)")
    print(f"ratio:          {ratio:8.1%}   ({verdict} the {TARGET_RATIO:.0%} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
