"""Video in, video out: a threaded reader, a writer with a codec fallback, and the pipeline.

The writer encodes H.264 (``avc1``, what web browsers play) where the machine can, through PyAV
(``pip install av``, detkit's ``video`` extra) or an OpenCV build with an H.264 encoder, and
falls back to MPEG-4 part 2 (``mp4v``, played by desktop players, not by browsers), then
Motion-JPEG; :attr:`VideoWriter.codec` and :attr:`VideoRun.codec` say which was used.

:func:`annotate_video` keeps three things busy at once::

    reader thread:  decode frames         (VideoReader, up to ``prefetch`` frames ahead)
    calling thread: model on batch k      (Predictor)
    writer thread:  draw + encode batch k-1 (BackgroundWorker, at most ``max_pending`` batches)

so drawing and encoding stay off the model's path and end-to-end fps stays close to model-only fps.
The reader takes a file path or a webcam index alike (``cv2.VideoCapture`` accepts both); a
webcam is just a source with no known frame count.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from detkit.apis.background import BackgroundIterator, BackgroundWorker
from detkit.apis.predictor import Predictor
from detkit.apis.tracking import ByteTracker, TrackTrails
from detkit.utils.result import Result
from detkit.utils.visualization import draw_predictions

__all__ = ["DEFAULT_CODECS", "H264_FOURCCS", "VIDEO_EXTENSIONS", "ErrorCallback", "VideoOpenError", "VideoReader",
           "VideoRun", "VideoWriter", "annotate_video"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})
# (fourcc, file extension) in order of preference: H.264 (avc1) in .mp4 plays in web browsers
# (PyAV's libx264, else OpenCV's encoder where its build has one); MPEG-4 part 2 in .mp4 plays in
# desktop players; Motion-JPEG in .avi is built into every OpenCV, even without FFmpeg's encoders.
DEFAULT_CODECS: tuple[tuple[str, str], ...] = (("avc1", ".mp4"), ("mp4v", ".mp4"), ("MJPG", ".avi"))
H264_FOURCCS = frozenset({"avc1", "h264", "H264", "X264"})  # fourccs that ask for H.264
_CODEC_NAMES = {"mp4v": "MPEG-4 part 2", "MJPG": "Motion-JPEG", "XVID": "MPEG-4 part 2 (Xvid)"}
_FALLBACK_FPS = 30.0  # for sources that report no frame rate (some webcams)

VideoSource = str | Path | int


class VideoOpenError(OSError):
    """A video file or camera that OpenCV cannot open, or a writer no codec can open."""


class VideoReader:
    """Frames of a video file or a camera, decoded in a background thread.

    The source is opened on construction (so a bad one fails at once); decoding starts when the
    frames are iterated, and runs at most ``prefetch`` frames ahead. Iterate once.

    Args:
        source: A video file path, or a camera index (``0`` for the default webcam).
        prefetch: Most frames decoded ahead of the reader.
        max_frames: Stop after this many frames (None: until the source ends).

    Attributes:
        name: The path, or ``"camera0"``.
        fps: Frames per second the source reports (30 when it reports none).
        frame_size: ``(width, height)`` in pixels.
        frame_count: Number of frames for a file (as the container reports it), None for a camera.

    Raises:
        VideoOpenError: The source cannot be opened.
    """

    def __init__(self, source: VideoSource, prefetch: int = 16, max_frames: int | None = None) -> None:
        self.source = source
        self.is_camera = isinstance(source, int)
        self.name = f"camera{source}" if self.is_camera else str(source)
        if not self.is_camera and not Path(source).is_file():
            raise VideoOpenError(f"video not found: {source}")
        self._capture = cv2.VideoCapture(source if self.is_camera else str(source))
        if not self._capture.isOpened():
            self._capture.release()
            raise VideoOpenError(f"cannot open {'camera' if self.is_camera else 'video'} "
                                 f"{self.name} with OpenCV")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        if not fps or not math.isfinite(fps) or fps <= 0:
            logger.warning("%s reports no frame rate; using %g fps", self.name, _FALLBACK_FPS)
            fps = _FALLBACK_FPS
        self.fps = float(fps)
        self.frame_size = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                           int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = None if self.is_camera or count <= 0 else count
        if max_frames is not None and self.frame_count is not None:
            self.frame_count = min(self.frame_count, max_frames)
        self.max_frames = max_frames
        self._prefetch = prefetch
        self._frames: BackgroundIterator[np.ndarray] | None = None

    def _decode(self) -> Iterator[np.ndarray]:
        """Read frames until the source ends (runs in the background thread)."""
        read = 0
        while self.max_frames is None or read < self.max_frames:
            ok, frame = self._capture.read()
            if not ok:
                return
            read += 1
            yield frame

    def __iter__(self) -> Iterator[np.ndarray]:
        """HxWx3 uint8 BGR frames in order; decoding errors are raised here."""
        if self._frames is not None:
            raise RuntimeError(f"{self.name}: a VideoReader is iterated once")
        self._frames = BackgroundIterator(self._decode(), maxsize=self._prefetch,
                                          name=f"detkit-read-{self.name}")
        return self._frames

    def batches(self, batch_size: int) -> Iterator[list[np.ndarray]]:
        """Lists of ``batch_size`` consecutive frames (the last one may be shorter)."""
        batch: list[np.ndarray] = []
        for frame in self:
            batch.append(frame)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        """Stop the decoding thread and release the source; idempotent."""
        if self._frames is not None:
            self._frames.close()
        if self._frames is None or not self._frames.alive:  # never release under a live reader
            self._capture.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _PyAVEncoder:
    """H.264 through PyAV (libx264): BGR frames in, an .mp4 with ``yuv420p`` (browsers' format)."""

    def __init__(self, path: Path, fps: float, frame_size: tuple[int, int]) -> None:
        import av  # optional (the `video` extra); ImportError: the caller tries the next codec

        width, height = frame_size
        if width % 2 or height % 2:
            raise ValueError(f"H.264 (yuv420p) needs an even width and height, got {width}x{height}")
        self._av = av
        self._container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
        try:
            self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(100000))
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.options = {"crf": "20", "preset": "veryfast"}
            self._container.start_encoding()  # the file exists from here, as OpenCV's does
        except Exception:
            self._container.close()
            raise
        self._frames = 0
        self.encoder = "PyAV " + self._stream.codec_context.name

    def write(self, frame: np.ndarray) -> None:
        picture = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        picture.pts = self._frames
        self._frames += 1
        for packet in self._stream.encode(picture):
            self._container.mux(packet)

    def release(self) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            for packet in self._stream.encode(None):  # flush the encoder's delayed frames
                container.mux(packet)
        finally:
            container.close()


def _open_pyav(path: Path, fps: float, frame_size: tuple[int, int]) -> tuple[_PyAVEncoder | None, str]:
    """A PyAV H.264 encoder, or None and why not (PyAV not installed, no libx264, odd size)."""
    try:
        return _PyAVEncoder(path, fps, frame_size), ""
    except ImportError:
        return None, "PyAV is not installed (pip install av)"
    except Exception as error:  # av.FFmpegError and friends: no encoder, cannot open the file
        path.unlink(missing_ok=True)
        return None, f"PyAV: {error}"


def _open_opencv(path: Path, fourcc: str, fps: float, frame_size: tuple[int, int]) -> Any:
    """An opened ``cv2.VideoWriter``, or None; OpenCV's own error lines are silenced for H.264,
    which most builds cannot encode (the fallback is logged instead)."""
    quiet = fourcc in H264_FOURCCS and hasattr(cv2, "utils") and hasattr(cv2.utils, "logging")
    level = cv2.utils.logging.getLogLevel() if quiet else None
    if quiet:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, frame_size)
    finally:
        if quiet:
            cv2.utils.logging.setLogLevel(level)
    if writer.isOpened():
        return writer
    writer.release()
    return None


class VideoWriter:
    """A video file at a given frame rate and size, trying codecs in order.

    An H.264 entry (fourcc ``avc1``) is written through PyAV when it is installed (libx264),
    else through OpenCV when its build can encode H.264; other fourccs go to ``cv2.VideoWriter``.
    The first codec that opens wins; the file gets that codec's extension (so ``out.mp4`` may
    become ``out.avi``, with a warning logged). Read :attr:`path` for the file actually written
    and :attr:`codec` for how.

    Args:
        path: Output file; its extension is replaced by the codec's.
        fps: Frames per second.
        frame_size: ``(width, height)``; every frame written must have this size.
        codecs: ``(fourcc, extension)`` pairs, in order of preference.

    Attributes:
        fourcc: The codec used (``"avc1"`` for H.264, ``"mp4v"``, ``"MJPG"``...).
        codec: What was used, for people: ``"H.264 (avc1, PyAV libx264)"``, ``"MPEG-4 part 2
            (mp4v, OpenCV)"``...
        browser_playable: Whether web browsers play it (H.264 in .mp4).

    Raises:
        VideoOpenError: No codec can open a writer.
    """

    def __init__(self, path: str | Path, fps: float, frame_size: tuple[int, int],
                 codecs: Sequence[tuple[str, str]] = DEFAULT_CODECS) -> None:
        self.fps = float(fps)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.frames_written = 0
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tried, reasons = [], []
        for fourcc, extension in codecs:
            candidate = Path(path).with_suffix(extension)
            writer, backend = None, "OpenCV"
            if fourcc in H264_FOURCCS:
                writer, reason = _open_pyav(candidate, self.fps, self.frame_size)
                if writer is not None:
                    backend = writer.encoder
                else:
                    reasons.append(reason)
            if writer is None:
                writer = _open_opencv(candidate, fourcc, self.fps, self.frame_size)
            if writer is not None:
                if tried:
                    because = f" ({'; '.join(reasons)})" if reasons else ""
                    logger.warning("cannot write %s with %s%s; writing %s with %s instead",
                                   Path(path).name, " / ".join(tried), because, candidate.name, fourcc)
                h264 = fourcc in H264_FOURCCS
                self._writer, self.path = writer, candidate
                self.fourcc = "avc1" if h264 else fourcc
                self.codec = f"{'H.264' if h264 else _CODEC_NAMES.get(fourcc, fourcc)} ({self.fourcc}, {backend})"
                self.browser_playable = h264 and extension.lower() == ".mp4"
                return
            tried.append(fourcc)
        raise VideoOpenError(f"no codec can write {path} ({', '.join(tried)} tried"
                             f"{'; ' + '; '.join(reasons) if reasons else ''})")

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 BGR frame of :attr:`frame_size`."""
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            raise ValueError(f"{self.path}: frame of size {frame.shape[1]}x{frame.shape[0]}, the "
                             f"video is {self.frame_size[0]}x{self.frame_size[1]}")
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file; idempotent."""
        self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass
class VideoRun:
    """What :func:`annotate_video` did.

    Attributes:
        frames: Frames read, run through the model and written.
        seconds: Wall time from the first read to the last frame written.
        output_path: The annotated video (its extension follows the codec used), or None.
        fourcc: The codec of the output (``"avc1"`` for H.264), or None.
        codec: How the output was encoded, for people (:attr:`VideoWriter.codec`), or None.
    """

    frames: int
    seconds: float
    output_path: Path | None
    fourcc: str | None
    codec: str | None = None

    @property
    def fps(self) -> float:
        """End-to-end frames per second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


ResultsCallback = Callable[[int, list[np.ndarray], list[Result]], None]
ErrorCallback = Callable[[str, Exception], None]
DrawFunction = Callable[[np.ndarray, Result], np.ndarray]


def _frame_results(predictor: Predictor, batch: list[np.ndarray], sources: list[str], batch_size: int,
                   on_error: ErrorCallback | None) -> list[Result]:
    """The results of a batch of frames; with ``on_error``, a frame's own fault (NaN output, a
    model error it alone causes) is handed to it and the frame gets no detections."""
    if on_error is None:
        return predictor(batch, batch_size=batch_size, sources=sources)
    results = []
    for frame, source, outcome in zip(batch, sources, predictor.predict_each(
            batch, batch_size=batch_size, sources=sources)):
        if isinstance(outcome, Exception):
            on_error(source, outcome)
            outcome = Result.from_prediction({"boxes": np.zeros((0, 4), np.float32)},
                                             (frame.shape[0], frame.shape[1]), predictor.class_names, source)
        results.append(outcome)
    return results


def annotate_video(predictor: Predictor, reader: VideoReader, output_path: str | Path | None, *,
                   batch_size: int = 8, draw: DrawFunction | None = None,
                   on_results: ResultsCallback | None = None, max_pending: int = 2,
                   codecs: Sequence[tuple[str, str]] = DEFAULT_CODECS,
                   on_error: ErrorCallback | None = None,
                   tracker: ByteTracker | None = None) -> VideoRun:
    """Detect objects in every frame and write the annotated video, read/model/draw overlapped.

    Args:
        predictor: Runs the model; frames go in as BGR arrays.
        reader: The source (opened); it is closed on return.
        output_path: Where to write the annotated video, at the source's frame rate and size
            (the extension follows the codec, see :class:`VideoWriter`); None to write nothing.
        batch_size: Frames per model call.
        draw: ``draw(frame, result) -> annotated frame``, run in the writer thread, frames in
            order. Default: :func:`~detkit.utils.visualization.draw_predictions`, or with a
            ``tracker`` a :class:`~detkit.apis.tracking.TrackTrails` (track colours and trails).
        on_results: Called in the calling thread after each batch with the index of its first
            frame, its frames and their results (e.g. to collect json records, update a bar);
            with a ``tracker``, the tracked results.
        max_pending: Batches the writer thread may lag behind the model.
        codecs: Codecs to try for the output, see :class:`VideoWriter`.
        on_error: Called as ``on_error(source, error)`` for a frame the model fails on alone (NaN
            or inf output, see :meth:`Predictor.predict_each`); the frame is written without
            boxes and the video goes on. None: such an error stops the video (it is raised).
        tracker: Follow objects across frames: each frame's result goes through
            ``tracker.update`` (in the calling thread, frames in order) and only the tracked
            detections, with their ``track_ids``, are drawn and handed to ``on_results``. Give
            a fresh tracker per video; run the predictor with a score threshold at most
            ``tracker.detector_score_thresh``, or the low-score association has nothing to use.

    Returns:
        The frame count, wall time, output file and its codec.

    Raises:
        Whatever decoding, the model, ``draw`` or encoding raised; every thread is stopped and
        the files are closed first.
    """
    writer = VideoWriter(output_path, reader.fps, reader.frame_size, codecs) if output_path else None
    if draw is None:
        draw = TrackTrails() if tracker is not None else draw_predictions

    def draw_and_write(batch: tuple[list[np.ndarray], list[Result]]) -> None:
        for frame, result in zip(*batch):
            writer.write(draw(frame, result))

    start = time.perf_counter()
    frames = 0
    try:
        with reader, BackgroundWorker(draw_and_write, maxsize=max_pending,
                                      name=f"detkit-write-{reader.name}") as worker:
            for batch in reader.batches(batch_size):
                sources = [f"{reader.name}#{frames + i}" for i in range(len(batch))]
                results = _frame_results(predictor, batch, sources, batch_size, on_error)
                if tracker is not None:
                    results = [tracker.update(result) for result in results]
                if on_results is not None:
                    on_results(frames, batch, results)
                if writer is not None:
                    worker.put((batch, results))
                frames += len(batch)
    finally:
        if writer is not None:
            writer.close()
    return VideoRun(frames=frames, seconds=time.perf_counter() - start,
                    output_path=writer.path if writer else None,
                    fourcc=writer.fourcc if writer else None, codec=writer.codec if writer else None)
