"""Background threads, video reading and writing, and the annotate_video pipeline."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from apis_testing import detkit_threads, frame_color, run_with_timeout, video_properties, write_clip

from detkit.apis import Predictor, Result
from detkit.apis.background import BackgroundIterator, BackgroundWorker
from detkit.apis.video import VideoOpenError, VideoReader, VideoWriter, annotate_video


def test_background_iterator_yields_in_order_and_reraises_errors() -> None:
    def numbers_then_error() -> Iterator[int]:
        yield from range(3)
        raise ValueError("decoder broke")

    iterator = BackgroundIterator(numbers_then_error(), maxsize=1)
    assert [next(iterator) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="decoder broke"):
        next(iterator)
    assert not iterator.alive
    assert list(BackgroundIterator(range(50), maxsize=4)) == list(range(50))


def test_background_iterator_stops_a_blocked_producer_on_close() -> None:
    produced = []

    def endless() -> Iterator[int]:
        for i in itertools.count():
            produced.append(i)
            yield i

    def read_two_then_close() -> None:
        with BackgroundIterator(endless(), maxsize=2) as iterator:
            assert next(iterator) == 0 and next(iterator) == 1
        assert not iterator.alive
        assert list(iterator) == []

    run_with_timeout(read_two_then_close)
    assert len(produced) < 10  # bounded: at most maxsize ahead


def test_background_worker_runs_in_order_and_reraises_at_put_or_close() -> None:
    seen: list[int] = []
    with BackgroundWorker(seen.append, maxsize=2) as worker:
        for i in range(20):
            worker.put(i)
    assert seen == list(range(20)) and not worker.alive

    def fail_on_three(item: int) -> None:
        if item == 3:
            raise RuntimeError("disk full")

    def put_until_it_fails() -> None:
        worker = BackgroundWorker(fail_on_three, maxsize=1)
        with pytest.raises(RuntimeError, match="disk full"):
            for i in range(100):
                worker.put(i)
                time.sleep(0.002)
            worker.close()
        assert not worker.alive

    run_with_timeout(put_until_it_fails)
    worker = BackgroundWorker(fail_on_three, maxsize=8)
    for i in range(5):
        worker.put(i)
    with pytest.raises(RuntimeError, match="disk full"):
        run_with_timeout(worker.close)


def test_reader_reports_fps_size_count_and_decodes_every_frame(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=10, fps=12.0, size=(64, 48))
    with VideoReader(clip) as reader:
        assert (reader.fps, reader.frame_size, reader.frame_count) == (12.0, (64, 48), 10)
        assert reader.name == str(clip) and not reader.is_camera
        frames = list(reader)
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    for i, frame in enumerate(frames):  # lossy codec: close to the written colour
        assert np.abs(frame.mean(axis=(0, 1)) - frame_color(i)).max() < 12
    assert detkit_threads() == []


def test_reader_batches_and_max_frames(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    with VideoReader(clip) as reader:
        assert [len(b) for b in reader.batches(4)] == [4, 4, 2]
    with VideoReader(clip, max_frames=7) as reader:
        assert reader.frame_count == 7
        assert [len(b) for b in reader.batches(3)] == [3, 3, 1]
    with VideoReader(clip, prefetch=1) as reader:  # leaving early stops the decoding thread
        next(iter(reader))
    assert detkit_threads() == []


def test_reader_refuses_missing_and_broken_videos(tmp_path: Path) -> None:
    with pytest.raises(VideoOpenError, match="video not found"):
        VideoReader(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoOpenError, match="cannot open video"):
        VideoReader(broken)


def test_writer_falls_back_to_the_next_codec_and_says_so(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="detkit.apis.video"):
        with VideoWriter(tmp_path / "out.mp4", 15.0, (32, 24),
                         codecs=(("XXXX", ".mp4"), ("MJPG", ".avi"))) as writer:
            for i in range(4):
                writer.write(np.full((24, 32, 3), frame_color(i), np.uint8))
            with pytest.raises(ValueError, match="frame of size 10x10"):
                writer.write(np.zeros((10, 10, 3), np.uint8))
    assert writer.path == tmp_path / "out.avi" and writer.fourcc == "MJPG"
    assert "cannot write out.mp4 with XXXX; writing out.avi with MJPG" in caplog.text
    assert video_properties(writer.path) == (4, 15.0, (32, 24))
    with pytest.raises(VideoOpenError, match="no codec"):
        VideoWriter(tmp_path / "x.mp4", 15.0, (32, 24), codecs=(("XXXX", ".mp4"),))


def test_annotate_video_keeps_frame_count_fps_and_size(tmp_path: Path, predictor: Predictor) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=11, fps=9.0, size=(80, 60))
    batches: list[tuple[int, int]] = []
    sources: list[str] = []
    draw_threads: set[str] = set()

    def collect(first: int, frames: list[np.ndarray], results: list[Result]) -> None:
        batches.append((first, len(frames)))
        sources.extend(r.source for r in results)
        assert all(r.image_size == (60, 80) for r in results)

    def draw(frame: np.ndarray, result: Result) -> np.ndarray:
        draw_threads.add(threading.current_thread().name)
        return cv2.rectangle(frame.copy(), (0, 0), (10, 10), (0, 0, 255), -1)

    run = run_with_timeout(lambda: annotate_video(
        predictor, VideoReader(clip), tmp_path / "out" / "clip.mp4", batch_size=4,
        on_results=collect, draw=draw))
    assert run.frames == 11 and run.output_path == tmp_path / "out" / "clip.mp4" and run.fps > 0
    assert batches == [(0, 4), (4, 4), (8, 3)]
    assert sources == [f"{clip}#{i}" for i in range(11)]
    assert draw_threads == {f"detkit-write-{clip}"}  # drawing is off the model's thread
    assert video_properties(run.output_path) == (11, 9.0, (80, 60))
    assert detkit_threads() == []


def test_annotate_video_draws_with_draw_predictions_by_default(tmp_path: Path,
                                                                predictor: Predictor) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=3, size=(96, 64))
    run = annotate_video(predictor, VideoReader(clip), tmp_path / "annotated.mp4", batch_size=2)
    capture = cv2.VideoCapture(str(run.output_path))
    ok, frame = capture.read()
    capture.release()
    assert ok and np.abs(frame.astype(int) - frame_color(0)).max() > 100  # something drawn


def test_errors_in_drawing_or_the_model_stop_every_thread(tmp_path: Path,
                                                          predictor: Predictor) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=30)

    def broken_draw(frame: np.ndarray, result: Result) -> np.ndarray:
        raise RuntimeError("cannot draw")

    with pytest.raises(RuntimeError, match="cannot draw"):
        run_with_timeout(lambda: annotate_video(predictor, VideoReader(clip, prefetch=2),
                                                tmp_path / "a.mp4", batch_size=2, draw=broken_draw))
    assert detkit_threads() == []

    def broken_model(*args: object, **kwargs: object) -> list[Result]:
        raise MemoryError("out of memory")

    failing = type("FailingPredictor", (), {"__call__": broken_model})()
    with pytest.raises(MemoryError):
        run_with_timeout(lambda: annotate_video(failing, VideoReader(clip, prefetch=2),
                                                tmp_path / "b.mp4", batch_size=2))
    assert detkit_threads() == []
    assert (tmp_path / "b.mp4").is_file()  # the writer was closed
