"""The work of ``detkit infer``: expand the inputs, run images in batches and videos frame by frame,
write annotated copies and ``predictions.json``, and keep a report of what failed.

Imported by :func:`detkit.cli.infer.run` only (it imports OpenCV, torch and the detectors).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from detkit.apis.background import BackgroundIterator, BackgroundWorker
from detkit.apis.images import IMAGE_EXTENSIONS, ImageReadError, read_image
from detkit.apis.predictor import Predictor
from detkit.apis.result import Result
from detkit.apis.tracking import ByteTracker, TrackTrails
from detkit.apis.video import VIDEO_EXTENSIONS, VideoOpenError, VideoReader, VideoRun, annotate_video
from detkit.engine.run_folder import check_output_dir
from detkit.utils.visualization import draw_predictions

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
    predictions_path: Path | None = None  # where the records went (None: nowhere, or not yet)
    video_codecs: list[str] = field(default_factory=list)  # per video written: how (VideoRun.codec)

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


# --- tracking (--track) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Tracking:
    """``--track``: a fresh tracker and trail drawer per video.

    Attributes:
        options: :class:`~detkit.apis.tracking.ByteTracker` keywords.
        trail_length: Centres drawn behind each track.
        image_score_thresh: The threshold images keep (the detector runs at the tracker's lower
            one, :attr:`detector_score_thresh`); None: keep what the detector gives.
    """

    options: dict[str, Any]
    trail_length: int = 30
    image_score_thresh: float | None = None

    @property
    def detector_score_thresh(self) -> float:
        """The score threshold the detector must keep for the tracker (its low threshold)."""
        return float(self.options.get("low_thresh", 0.1))

    def new_tracker(self) -> ByteTracker:
        return ByteTracker(**self.options)

    def new_drawer(self) -> TrackTrails:
        return TrackTrails(self.trail_length)

    def image_result(self, result: Result) -> Result:
        """An image's result at the images' threshold (images are not tracked)."""
        if self.image_score_thresh is None:
            return result
        return result.select(result.scores >= self.image_score_thresh)

# --- end of tracking ------------------------------------------------------------------------------


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


def _without_source(error: Exception, source: str) -> str:
    """The message of ``error`` without a leading ``"SOURCE: "`` (the report names the input)."""
    message = str(error)
    return message[len(source) + 2:] if message.startswith(f"{source}: ") else message


def _read_images(items: list[InputItem]) -> Iterator[tuple[InputItem, np.ndarray | Exception]]:
    for item in items:
        try:
            yield item, read_image(item.path)
        except ImageReadError as error:
            yield item, error


def run_images(predictor: Predictor, items: list[InputItem], names: OutputNames, report: Report,
               batch_size: int, progress: bool, tracking: Tracking | None = None) -> None:
    """Images: decode ahead in a thread, model in batches, draw and write in another thread."""
    def draw_and_write(batch: list[tuple[InputItem, np.ndarray, Result, Path]]) -> None:
        for item, image, result, out_path in batch:
            try:
                _write_image(out_path, draw_predictions(image, result))
            except (OSError, cv2.error) as error:
                report.fail(item.name, f"cannot write {out_path}: {error}")
            except Exception as error:  # noqa: BLE001 - a drawing fault costs this image only
                report.fail(item.name, f"cannot draw {out_path}: {type(error).__name__}: {error}")

    def run_batch(batch: list[tuple[InputItem, np.ndarray]]) -> None:
        # per image: a NaN output or a model error that an image alone causes (out of memory on
        # a huge one) fails that image; the batch's others are written
        outcomes = predictor.predict_each([image for _, image in batch], batch_size=batch_size,
                                          sources=[item.name for item, _ in batch])
        done = []
        for (item, image), outcome in zip(batch, outcomes):
            if isinstance(outcome, Exception):
                report.fail(item.name, _without_source(outcome, item.name))
                continue
            if tracking is not None:
                outcome = tracking.image_result(outcome)
            report.add(outcome, item.name, predictor.label_to_category_id)
            done.append((item, image, outcome, names.claim(item.path.name)))
        report.images += len(done)
        writer.put(done)
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
              batch_size: int, max_frames: int | None, progress: bool,
              tracking: Tracking | None = None) -> None:
    """One video file or camera through :func:`annotate_video`; problems become failures."""
    try:
        reader = VideoReader(item.camera if item.kind == "camera" else item.path,
                             max_frames=max_frames)
    except VideoOpenError as error:
        report.fail(item.name, str(error))
        return
    stem = item.name if item.kind == "camera" else item.path.stem
    out_path = names.claim(f"{stem}.mp4")
    frame_errors: list[tuple[str, Exception]] = []  # frames the model failed on alone (NaN...)

    with tqdm(total=reader.frame_count, unit="frame", desc=Path(reader.name).name,
              disable=not progress) as bar:
        def collect(first_index: int, frames: list[np.ndarray], results: list[Result]) -> None:
            for offset, result in enumerate(results):
                report.add(result, reader.name, predictor.label_to_category_id, first_index + offset)
            bar.update(len(frames))

        try:
            run = annotate_video(predictor, reader, out_path, batch_size=batch_size, on_results=collect,
                                 on_error=lambda source, error: frame_errors.append((source, error)),
                                 **({} if tracking is None else {"tracker": tracking.new_tracker(),
                                                                 "draw": tracking.new_drawer()}))
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
    report.video_codecs.append(describe_codec(run))
    if frame_errors:  # one line per video, not one per frame
        source, error = frame_errors[0]
        report.fail(item.name, f"the model failed on {len(frame_errors)} of {run.frames} frames "
                               f"(written without boxes); the first, {source}: "
                               f"{_without_source(error, source)}")
    if reader.frame_count is not None and run.frames < reader.frame_count:
        tqdm.write(f"warning: {reader.name}: read {run.frames} of {reader.frame_count} frames",
                   file=sys.stderr)


def describe_codec(run: VideoRun) -> str:
    """How a video was encoded, and what to do when browsers will not play it."""
    if run.codec is None:
        return "not written"
    if run.fourcc == "avc1":
        return f"{run.codec}, plays in web browsers"
    return f"{run.codec}; web browsers do not play it: `pip install av` (detkit's video extra) for H.264"


def write_json(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` atomically (temporary file, then rename); no temporary left on failure."""
    temporary = path.with_suffix(".json.tmp")
    try:
        temporary.write_text(json.dumps(records))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_predictions(path: Path, report: Report) -> Path | None:
    """Write ``report.records`` to ``path``, or, when that fails, to a new file elsewhere.

    The work is done when this runs, so the predictions must not be lost to a full disk or an
    output folder removed during the run: they go to a new file in the temporary folder (then
    the current folder), and the failure, naming both paths, is added to the report.

    Returns:
        The file written, or None when no location took it (reported too).
    """
    try:
        write_json(path, report.records)
        return path
    except OSError as error:
        reason = f"cannot write it ({error.strerror or error})"
    for folder in (Path(tempfile.gettempdir()), Path.cwd()):
        try:
            handle, name = tempfile.mkstemp(prefix="detkit_predictions_", suffix=".json", dir=folder)
            with os.fdopen(handle, "w") as file:
                json.dump(report.records, file)
        except OSError:
            continue
        report.fail(str(path), f"{reason}; the predictions are saved in {name} instead")
        return Path(name)
    report.fail(str(path), f"{reason}, nor in {tempfile.gettempdir()} or {Path.cwd()}: the "
                           f"{len(report.records)} predictions are lost")
    return None


def run_inputs(predictor: Predictor, specs: list[str], out_dir: Path, batch_size: int,
               max_frames: int | None, progress: bool, *, tracking: Tracking | None = None) -> Report:
    """Everything ``detkit infer`` does after building the predictor.

    Args:
        predictor: The detector to run.
        specs: Image files, folders (top level), globs, video files, webcam indices.
        out_dir: Output folder (created): annotated images and videos, ``predictions.json``.
        batch_size: Images or frames per model call.
        max_frames: Stop each video or webcam after this many frames (None: all).
        progress: Show progress bars.
        tracking: ``--track``: track the objects of each video and camera (:class:`Tracking`);
            None: detections only.

    Returns:
        The report: JSON records, failures, counts and where the records were written
        (``predictions_path``: ``predictions.json``, or a fallback file, see
        :func:`save_predictions`).

    Raises:
        detkit.engine.run_folder.OutputDirError: ``out_dir`` cannot be created or written.
    """
    check_output_dir(out_dir, "--out")
    report = Report()
    items = collect_inputs(specs, report)
    names = OutputNames(out_dir, [item.path for item in items if item.path is not None])
    images = [item for item in items if item.kind == "image"]
    if images:
        run_images(predictor, images, names, report, batch_size, progress, tracking)
    for item in items:
        if item.kind != "image":
            run_video(predictor, item, names, report, batch_size, max_frames, progress, tracking)
    report.predictions_path = save_predictions(out_dir / PREDICTIONS_FILE, report)
    return report
