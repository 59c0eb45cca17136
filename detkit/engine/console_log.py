"""Console logging that shares the terminal with tqdm progress bars.

A plain :class:`logging.StreamHandler` writes a record right after the bar's last frame (a bar
redraws itself with ``\\r`` and ends no line), so the log line is glued to the bar and the bar is
then redrawn over the log. :class:`TqdmLoggingHandler` writes each record through
:func:`tqdm.tqdm.write`, which clears the bars on the same stream, prints the line and redraws
them below it: every log line stands on its own line, and the bar stays whole under it. With no
bar active it writes exactly what a StreamHandler would.

:func:`detkit.engine.runner.setup_logging` installs it on the root logger for every command that
trains.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from tqdm import tqdm

__all__ = ["TqdmLoggingHandler"]


class TqdmLoggingHandler(logging.Handler):
    """A logging handler that prints records with ``tqdm.write`` (above any active bar).

    Args:
        stream: Where to print; ``None``: ``sys.stderr`` as it is when a record is printed
            (tqdm's default stream too, so the bars and the log lines share it).
        level: The handler's level.
    """

    def __init__(self, stream: TextIO | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        """The stream records go to."""
        return self._stream if self._stream is not None else sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and print it on its own line, above the active bars."""
        try:
            message = self.format(record)
            tqdm.write(message, file=self.stream)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Flush the stream."""
        self.acquire()
        try:
            stream = self.stream
            if hasattr(stream, "flush"):
                stream.flush()
        finally:
            self.release()
