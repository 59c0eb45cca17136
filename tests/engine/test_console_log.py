"""Console log lines printed while a tqdm bar is active stand on their own lines and leave the
bar whole (detkit.engine.console_log, installed by runner.setup_logging)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from tqdm import tqdm

from detkit.engine.console_log import TqdmLoggingHandler
from detkit.engine.runner import setup_logging


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def drawn_lines(text: str) -> list[str]:
    """What a terminal shows of each line: the text after the last carriage return."""
    return [line.split("\r")[-1] for line in text.split("\n")]


def test_log_lines_during_a_bar_are_lines_of_their_own(monkeypatch, root_logging):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging(None)
    log = logging.getLogger("detkit.test_console")
    bar = tqdm(total=10, desc="train", file=stream, mininterval=0, ascii=True, ncols=60)
    messages = []
    for step in range(3):
        bar.update(1)
        messages.append(f"iter {step + 1}/10  loss 0.{step}")
        log.info(messages[-1])
    bar.close()
    shown = drawn_lines(stream.getvalue())
    logged = [line for line in shown if "iter " in line]
    assert len(logged) == 3
    for line, message in zip(logged, messages):
        assert line.endswith(message) and line.startswith("[") and "train" not in line
    last = [line for line in shown if line.strip()][-1]
    assert last.startswith("train:  30%|") and "3/10" in last  # the bar is drawn below the log
    # the bar was redrawn after each log line: its frames still read as whole bars
    frames = [frame for frame in stream.getvalue().replace("\n", "\r").split("\r")
              if frame.startswith("train:")]
    assert all("|" in frame and "/10" in frame for frame in frames)


def test_without_a_bar_the_handler_writes_like_a_stream_handler(root_logging):
    stream = io.StringIO()
    handler = TqdmLoggingHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("detkit.test_console.plain")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("one")
        log.warning("two\nlines")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert stream.getvalue() == "WARNING one\nWARNING two\nlines\n"


def test_setup_logging_installs_one_console_handler_and_the_log_file(tmp_path, root_logging):
    setup_logging(tmp_path)
    setup_logging(tmp_path)  # a second call replaces, never doubles
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_detkit", False)]
    assert sorted(type(h).__name__ for h in ours) == ["FileHandler", "TqdmLoggingHandler"]
    logging.getLogger("detkit.test_console").info("to the file")
    for handler in ours:
        handler.flush()
    assert "to the file" in (tmp_path / "log.txt").read_text()
