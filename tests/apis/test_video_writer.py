"""The video writer's codecs: H.264 through PyAV where it is installed, mp4v otherwise, and the
written file decodes back (OpenCV and PyAV) with the input's frame count, size and its codec."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from apis_testing import frame_color, video_properties, write_clip

from detkit.apis.predictor import Predictor
from detkit.apis.video import DEFAULT_CODECS, VideoReader, VideoWriter, annotate_video


def _write(path: Path, frames: int, size: tuple[int, int], **kwargs: object) -> VideoWriter:
    with VideoWriter(path, 12.0, size, **kwargs) as writer:
        for i in range(frames):
            writer.write(np.full((size[1], size[0], 3), frame_color(i), np.uint8))
    return writer


def _opencv_fourcc(path: Path) -> str:
    capture = cv2.VideoCapture(str(path))
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    capture.release()
    return code.to_bytes(4, "little").decode("ascii", "replace").lower()


@pytest.fixture
def no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import av`` fails, as on a machine without PyAV."""
    monkeypatch.setitem(sys.modules, "av", None)


def test_h264_is_the_first_choice() -> None:
    assert DEFAULT_CODECS[0] == ("avc1", ".mp4") and DEFAULT_CODECS[1] == ("mp4v", ".mp4")


def test_pyav_writes_h264_that_decodes_back(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    writer = _write(tmp_path / "clip.mp4", 9, (64, 48))
    assert writer.path == tmp_path / "clip.mp4" and writer.fourcc == "avc1"
    assert writer.codec.startswith("H.264 (avc1, PyAV") and writer.browser_playable
    assert video_properties(writer.path) == (9, 12.0, (64, 48))  # OpenCV decodes it
    assert _opencv_fourcc(writer.path) in ("h264", "avc1")
    with av.open(str(writer.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(frames) == 9
    for i, frame in enumerate(frames):  # lossy, but each flat frame keeps its colour
        assert np.abs(frame.astype(int) - np.array(frame_color(i))).mean() < 6


def test_without_pyav_the_writer_falls_back_to_mp4v_and_says_so(
        tmp_path: Path, no_pyav: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="detkit.apis.video"):
        writer = _write(tmp_path / "clip.mp4", 5, (64, 48))
    if writer.fourcc == "avc1":  # an OpenCV build that encodes H.264 itself
        assert writer.codec == "H.264 (avc1, OpenCV)"
        return
    assert writer.fourcc == "mp4v" and writer.codec == "MPEG-4 part 2 (mp4v, OpenCV)"
    assert not writer.browser_playable
    assert "PyAV is not installed (pip install av)" in caplog.text
    assert video_properties(writer.path) == (5, 12.0, (64, 48))
    assert _opencv_fourcc(writer.path) in ("mp4v", "fmp4")  # FFmpeg reads mp4v back as FMP4


def test_an_odd_frame_size_is_not_h264(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("av")
    with caplog.at_level(logging.WARNING, logger="detkit.apis.video"):
        writer = _write(tmp_path / "odd.mp4", 4, (33, 24))
    assert writer.fourcc != "avc1" or "OpenCV" in writer.codec
    if writer.fourcc != "avc1":
        assert "needs an even width and height" in caplog.text
    assert video_properties(writer.path)[0] == 4  # (OpenCV's mp4v writes 32 px wide: its own rounding)


def test_annotate_video_reports_its_codec(tmp_path: Path, predictor: Predictor) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=6, fps=10.0, size=(80, 60))
    run = annotate_video(predictor, VideoReader(clip), tmp_path / "out.mp4", batch_size=4)
    try:
        import av  # noqa: F401
        assert run.fourcc == "avc1" and run.codec.startswith("H.264")
    except ImportError:
        assert run.fourcc in ("avc1", "mp4v") and run.codec
    assert video_properties(run.output_path) == (6, 10.0, (80, 60))


def test_annotate_video_without_pyav_reports_mp4v(tmp_path: Path, predictor: Predictor, no_pyav: None) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=3, fps=10.0, size=(80, 60))
    run = annotate_video(predictor, VideoReader(clip), tmp_path / "out.mp4", batch_size=4)
    assert run.codec == ("H.264 (avc1, OpenCV)" if run.fourcc == "avc1" else "MPEG-4 part 2 (mp4v, OpenCV)")
    assert video_properties(run.output_path)[0] == 3
