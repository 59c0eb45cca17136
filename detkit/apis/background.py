"""Worker threads with bounded queues: a producer ahead of the consumer, a consumer behind it.

Inference overlaps three kinds of work: decoding (a video, image files), the model, and drawing /
encoding the output. OpenCV and PyTorch release the GIL in their heavy calls, so plain threads
overlap them well. Two building blocks:

* :class:`BackgroundIterator` runs an iterator in a thread, ``maxsize`` items ahead of its reader
  (decode ahead of the model).
* :class:`BackgroundWorker` runs a function on each item put into it, in a thread, at most
  ``maxsize`` items behind (draw and write batch ``k - 1`` while the model runs on batch ``k``).

Both propagate an exception raised in the thread to the caller (at the next ``next()`` /
``put()`` / ``close()``), never block forever on a full or empty queue once closed, and join their
thread on ``close()`` (they are context managers too).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["BackgroundIterator", "BackgroundWorker"]

T = TypeVar("T")

_POLL_SECONDS = 0.05  # how often a blocked put/get looks at the stop flag
_JOIN_SECONDS = 10.0  # how long close() waits for a thread before giving up on it


class _End:
    """Queue sentinel: the producer is done (``error`` is None) or failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def _put_until(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` into ``q``, waiting while it is full; False if ``stop`` is set first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


class BackgroundIterator(Iterator[T]):
    """Iterate ``iterable`` in a daemon thread, at most ``maxsize`` items ahead of the reader.

    The thread starts on construction. An exception raised while iterating is re-raised, the
    same object with its traceback, by the ``next()`` that reaches it. Closing early (``close()``
    or leaving a ``with`` block) stops the thread after the item in hand.

    Args:
        iterable: What to iterate; its ``__iter__`` is called in the background thread.
        maxsize: Most items decoded ahead (>= 1).
        name: Thread name (for debugging).
    """

    def __init__(self, iterable: Iterable[T], maxsize: int = 8, name: str = "detkit-prefetch") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(iterable,), name=name, daemon=True)
        self._thread.start()

    def _run(self, iterable: Iterable[T]) -> None:
        try:
            for item in iterable:
                if not _put_until(self._queue, item, self._stop):
                    return
            _put_until(self._queue, _End(), self._stop)
        except BaseException as error:  # noqa: BLE001 - handed to the reader, who re-raises it
            _put_until(self._queue, _End(error), self._stop)

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True  # stopped by close() from another thread
                    raise StopIteration from None
        if isinstance(item, _End):
            self._done = True
            self._thread.join()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the item in hand) and wait for it; idempotent."""
        self._done = True
        self._stop.set()
        while True:  # empty the queue so a producer blocked in put() sees the stop flag
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=_JOIN_SECONDS)

    @property
    def alive(self) -> bool:
        """Whether the background thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> BackgroundIterator[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()


class BackgroundWorker(Generic[T]):
    """Call ``function(item)`` in a daemon thread for each item given to :meth:`put`, in order.

    ``put`` blocks while ``maxsize`` items are waiting (back pressure: the caller never runs more
    than ``maxsize`` items ahead of the worker). When ``function`` raises, the worker stops taking
    items and the exception is re-raised by the next ``put`` or by ``close``.

    Args:
        function: Called once per item, in the worker thread.
        maxsize: Most items waiting (>= 1).
        name: Thread name (for debugging).
    """

    def __init__(self, function: Callable[[T], object], maxsize: int = 2,
                 name: str = "detkit-worker") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._function = function
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                return
            try:
                self._function(item)
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = error
                self._stop.set()
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, item: T) -> None:
        """Queue ``item`` for the worker, waiting while the queue is full.

        Raises:
            RuntimeError: The worker is closed.
            BaseException: Whatever ``function`` raised on an earlier item.
        """
        if self._closed:
            raise RuntimeError("put() on a closed BackgroundWorker")
        self._raise_error()
        if not _put_until(self._queue, item, self._stop):
            self._raise_error()
            raise RuntimeError("the BackgroundWorker stopped")

    def close(self, wait: bool = True) -> None:
        """Finish the queued items (``wait=True``) or drop them, join the thread, re-raise errors.

        Idempotent; a second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        if not wait or not _put_until(self._queue, _End(), self._stop):
            self._stop.set()
        self._thread.join(timeout=None if wait else _JOIN_SECONDS)
        self._raise_error()

    @property
    def alive(self) -> bool:
        """Whether the worker thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> BackgroundWorker[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close(wait=True)
        else:  # already failing: drop pending work, keep the first error
            self._closed = True
            self._stop.set()
            self._thread.join(timeout=_JOIN_SECONDS)
