"""Detect objects in images, folders, videos and webcams; write annotated copies and a json.

Usage::

    python tools/infer.py CONFIG CHECKPOINT INPUT... --out DIR [--score-threshold 0.3]
        [--classes dog,person] [--device cpu] [--batch-size 8] [--max-detections 100]
        [--max-frames N] [key.path=value ...]

* ``CONFIG``: a detkit config defining ``model``; ``CHECKPOINT``: a checkpoint whose ``"model"``
  entry is the state dict, or ``none`` for a config whose model loads its own weights.
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
work stops the tool at once (exit status 2) with the reason (for a checkpoint that does not fit,
the missing, unexpected and mis-shaped keys).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from detkit.apis.background import BackgroundIterator, BackgroundWorker  # noqa: E402
from detkit.apis.images import IMAGE_EXTENSIONS, ImageReadError, read_image  # noqa: E402
from detkit.apis.predictor import CheckpointError, Predictor  # noqa: E402
from detkit.apis.result import Result  # noqa: E402
from detkit.apis.video import VIDEO_EXTENSIONS, VideoOpenError, VideoReader, annotate_video  # noqa: E402
from detkit.config import ConfigError  # noqa: E402
from detkit.utils.visualization import draw_predictions  # noqa: E402

PREDICTIONS_FILE = "predictions.json"


@dataclass(frozen=True)
class InputItem:
    """One thing to run on: an image file, a video file or a camera."""

    kind: str  # "image", "video" or "camera"
    path: Path | None = None
    camera: int | None = None

    @property
    def name(self) -> str:
        return f"camera{self.camera}" if self.kind == "camera" else str(self.path)


@dataclass
class Report:
    """What happened: JSON records, failures, counts."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    images: int = 0
    frames: int = 0
    videos: list[str] = field(default_factory=list)

    def fail(self, source: str, reason: str) -> None:
        """Record a failed input and say so at once (the run goes on)."""
        self.failures.append((source, reason))
        tqdm.write(f"error: {source}: {reason}", file=sys.stderr)

    def add(self, result: Result, file_name: str, category_id: dict[int, int] | None,
            frame_index: int | None = None) -> None:
        """Append the JSON records of one image or frame."""
        for i, entry in enumerate(result.to_coco(image_id=0, label_to_category_id=category_id)):
            entry.pop("image_id")
            record: dict[str, Any] = {"file_name": file_name}
            if frame_index is not None:
                record["frame_index"] = frame_index
            record["bbox"] = entry.pop("bbox")
            record["score"] = entry.pop("score")
            record["category_id"] = entry.pop("category_id")
            record["category_name"] = result.class_names[i]
            record.update(entry)  # segmentation, landmarks
            self.records.append(record)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; positional ``key=value`` items that are not files are overrides."""
    parser = argparse.ArgumentParser(
        description="Run a detector on images, folders (top-level files), globs, videos and "
                    "webcams; write annotated copies and predictions.json into --out.",
        epilog="Config overrides are key.path=value (value parsed as a Python literal), e.g. "
               "model.num_classes=3. Exit status: 0 all inputs done, 1 some inputs failed, "
               "2 bad config, checkpoint or arguments.")
    parser.add_argument("config", help="detkit config file (.py) defining 'model'")
    parser.add_argument("checkpoint", help="checkpoint with a 'model' state dict, or 'none'")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image, folder, glob, video (.mp4 .avi .mov .mkv) or webcam index")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="drop detections below this score")
    parser.add_argument("--classes", default=None,
                        help="keep only these classes, comma-separated names or ids")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=8, help="images or frames per model call")
    parser.add_argument("--max-detections", type=int, default=None, help="most detections per image")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="stop each video / webcam after this many frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    args.overrides = [item for item in args.inputs if "=" in item and not os.path.exists(item)]
    args.inputs = [item for item in args.inputs if item not in args.overrides]
    if not args.inputs:
        parser.error("no INPUT given")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    return args


def _classify(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def collect_inputs(specs: list[str], report: Report) -> list[InputItem]:
    """Expand folders (top level) and globs; classify files; report what cannot be used."""
    items: list[InputItem] = []
    for spec in specs:
        path = Path(spec)
        if spec.isdigit() and not path.exists():
            items.append(InputItem("camera", camera=int(spec)))
        elif path.is_dir() or (not path.exists() and glob.has_magic(spec)):
            found = sorted(path.iterdir()) if path.is_dir() else sorted(
                Path(p) for p in glob.glob(spec, recursive=True))
            usable = [InputItem(kind, path=p) for p in found
                      if p.is_file() and (kind := _classify(p)) is not None]
            if not usable:
                report.fail(spec, "no image or video files " +
                            ("in this folder (sub-folders are not searched)" if path.is_dir()
                             else "match this pattern"))
            items += usable
        elif not path.exists():
            report.fail(spec, "no such file")
        elif _classify(path) is None:
            report.fail(spec, f"unsupported extension {path.suffix or '(none)'!r}; images: "
                              f"{' '.join(sorted(IMAGE_EXTENSIONS))}; videos: "
                              f"{' '.join(sorted(VIDEO_EXTENSIONS))}")
        else:
            items.append(InputItem(_classify(path), path=path))
    return items


class OutputNames:
    """Unique output paths under one folder: ``dog.jpg``, then ``dog_1.jpg``... .

    Args:
        folder: The output folder.
        inputs: Input files, never written over (when ``--out`` is an input folder).
    """

    def __init__(self, folder: Path, inputs: Iterable[Path] = ()) -> None:
        self.folder = folder
        self.taken: set[str] = {PREDICTIONS_FILE}
        # by path without extension: a video written as .avi must not replace an input clip.avi
        self.inputs = {path.resolve().with_suffix("") for path in inputs}

    def claim(self, name: str) -> Path:
        """A free path for ``name``: no stem given out before, nor the stem of an input here."""
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, n = name, 0
        while (candidate.lower() in self.taken or Path(candidate).stem.lower() in self.taken
               or (self.folder / candidate).resolve().with_suffix("") in self.inputs):
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self.taken.update({candidate.lower(), Path(candidate).stem.lower()})
        return self.folder / candidate


def _write_image(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"OpenCV cannot encode {path.suffix} images")
    data.tofile(path)


def _read_images(items: list[InputItem]) -> Iterator[tuple[InputItem, np.ndarray | Exception]]:
    for item in items:
        try:
            yield item, read_image(item.path)
        except ImageReadError as error:
            yield item, error


def run_images(predictor: Predictor, items: list[InputItem], names: OutputNames, report: Report,
               batch_size: int, progress: bool) -> None:
    """Images: decode ahead in a thread, model in batches, draw and write in another thread."""
    def draw_and_write(batch: list[tuple[InputItem, np.ndarray, Result, Path]]) -> None:
        for item, image, result, out_path in batch:
            try:
                _write_image(out_path, draw_predictions(image, result))
            except (OSError, cv2.error) as error:
                report.fail(item.name, f"cannot write {out_path}: {error}")

    def run_batch(batch: list[tuple[InputItem, np.ndarray]]) -> None:
        try:
            results = predictor([image for _, image in batch], batch_size=batch_size,
                                sources=[item.name for item, _ in batch])
        except (RuntimeError, ValueError) as error:  # e.g. out of memory on a huge image
            for item, _ in batch:
                report.fail(item.name, f"the model failed on a batch with this image: {error}")
            bar.update(len(batch))
            return
        for (item, _), result in zip(batch, results):
            report.add(result, item.name, predictor.label_to_category_id)
        report.images += len(batch)
        writer.put([(item, image, result, names.claim(item.path.name))
                    for (item, image), result in zip(batch, results)])
        bar.update(len(batch))

    with tqdm(total=len(items), unit="img", desc="images", disable=not progress) as bar, \
            BackgroundIterator(_read_images(items), maxsize=2 * batch_size) as images, \
            BackgroundWorker(draw_and_write, maxsize=2, name="detkit-write-images") as writer:
        batch: list[tuple[InputItem, np.ndarray]] = []
        for item, image in images:
            if isinstance(image, Exception):
                report.fail(item.name, str(image))
                bar.update(1)
                continue
            batch.append((item, image))
            if len(batch) == batch_size:
                run_batch(batch)
                batch = []
        if batch:
            run_batch(batch)


def run_video(predictor: Predictor, item: InputItem, names: OutputNames, report: Report,
              batch_size: int, max_frames: int | None, progress: bool) -> None:
    """One video file or camera through :func:`annotate_video`; problems become failures."""
    try:
        reader = VideoReader(item.camera if item.kind == "camera" else item.path,
                             max_frames=max_frames)
    except VideoOpenError as error:
        report.fail(item.name, str(error))
        return
    stem = item.name if item.kind == "camera" else item.path.stem
    out_path = names.claim(f"{stem}.mp4")

    with tqdm(total=reader.frame_count, unit="frame", desc=Path(reader.name).name,
              disable=not progress) as bar:
        def collect(first_index: int, frames: list[np.ndarray], results: list[Result]) -> None:
            for offset, result in enumerate(results):
                report.add(result, reader.name, predictor.label_to_category_id, first_index + offset)
            bar.update(len(frames))

        try:
            run = annotate_video(predictor, reader, out_path, batch_size=batch_size, on_results=collect)
        except KeyboardInterrupt:
            if item.kind != "camera":
                raise
            tqdm.write(f"{reader.name}: stopped (Ctrl+C)", file=sys.stderr)
            return
        except (OSError, cv2.error, RuntimeError, ValueError) as error:
            report.fail(item.name, f"{type(error).__name__}: {error}")
            return
    report.frames += run.frames
    report.videos.append(str(run.output_path))
    if reader.frame_count is not None and run.frames < reader.frame_count:
        tqdm.write(f"warning: {reader.name}: read {run.frames} of {reader.frame_count} frames",
                   file=sys.stderr)


def write_json(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` atomically (temporary file, then rename)."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(records))
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    args = parse_args(argv)
    try:
        predictor = Predictor.from_config(
            args.config, None if args.checkpoint.lower() == "none" else args.checkpoint,
            device=args.device, overrides=args.overrides, score_threshold=args.score_threshold,
            classes=args.classes, max_detections=args.max_detections)
    except (CheckpointError, ConfigError, KeyError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report()
    items = collect_inputs(args.inputs, report)
    names = OutputNames(out_dir, [item.path for item in items if item.path is not None])
    start = time.perf_counter()
    images = [item for item in items if item.kind == "image"]
    if images:
        run_images(predictor, images, names, report, args.batch_size, not args.no_progress)
    for item in items:
        if item.kind != "image":
            run_video(predictor, item, names, report, args.batch_size, args.max_frames,
                      not args.no_progress)
    write_json(out_dir / PREDICTIONS_FILE, report.records)
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


if __name__ == "__main__":
    sys.exit(main())
