"""Helpers for the inference tests: video clips with known frames, threads left behind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

T = TypeVar("T")


def frame_color(index: int) -> tuple[int, int, int]:
    """The BGR colour of frame ``index`` of a test clip (flat frames, far apart)."""
    return (index * 23) % 256, 255 - (index * 41) % 256, 128


def write_clip(path: Path, frames: int = 10, fps: float = 12.0,
               size: tuple[int, int] = (64, 48)) -> Path:
    """An mp4v clip of ``frames`` flat frames of :func:`frame_color`, ``size`` = (w, h)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), frame_color(i), np.uint8))
    writer.release()
    return path


def detkit_threads() -> list[str]:
    """Names of the live threads that detkit.apis started (reader, writer, prefetch)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("detkit-") and t.is_alive()]


def video_properties(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames decoded, fps, (width, height)) of a video file, read by OpenCV."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, fps, size


def run_with_timeout(function: Callable[[], T], seconds: float = 20.0) -> T:
    """``function()`` in a daemon thread; fails the test if it has not returned in ``seconds``.

    Exceptions raised by ``function`` are re-raised here (pytest has no timeout plugin here).
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function} did not return within {seconds} s (a hang?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
