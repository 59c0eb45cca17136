"""Run a loading function in a forked child and take back its result through shared memory.

A COCO-train-sized json (300 MB) parses into ~2 GB of Python objects that live only until the
columns (:mod:`detkit.data.records`) are built from them. Parsed in the loading process, they raise
its peak resident memory by those 2 GB and, freed, leave a fragmented heap; freeing 30 million
objects also costs a second. :func:`run_forked` does the parse and the column building in a
``fork()`` ed child instead: the child pickles its result with protocol 5, writing every numpy
buffer out of band into an anonymous shared-memory file (``memfd``), and exits without freeing
anything; the parent maps that file read-only (every page mapped at once) and unpickles the
arrays as read-only views of the mapping (no copy). The parent's memory grows by the
columns only, and DataLoader workers forked from it share those pages (clean pages are never
copied into a worker).

The parent waits for its children (a child that never ends would hold it). Only where it is
safe and worth it: Linux (``fork``, ``memfd_create``), no other Python thread
running in the parent (a fork copies locks held by other threads) except tqdm's monitor (a
progress bar started it; it holds only tqdm's own lock, which the child never takes), and the
caller's choice of size. Whatever goes wrong in the child (an exception, a crash, a result that does not pickle)
makes :func:`run_forked` answer ``None``, and the caller does the work in its own process, which
gives the same result or the same error.
"""

from __future__ import annotations

import mmap
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ForkedCall", "fork_available", "run_forked", "start_forked"]

T = TypeVar("T")

_ALIGN = 64  # out-of-band buffers start on cache-line boundaries (numpy's alignment needs <= 16)


def _other_threads() -> list[threading.Thread]:
    """The Python threads of this process besides the calling one and tqdm's monitor (module docstring)."""
    try:
        from tqdm._monitor import TMonitor  # a private module: without it, every other thread counts
    except ImportError:
        TMonitor = ()  # noqa: N806 - isinstance(t, ()) is False

    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and not isinstance(t, TMonitor)]


def fork_available() -> bool:
    """``fork`` and ``memfd_create`` exist and no other Python thread (tqdm's monitor aside) runs
    in this process."""
    return hasattr(os, "fork") and hasattr(os, "memfd_create") and not _other_threads()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        written = os.write(fd, view)
        view = view[written:]


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(function: Callable[[], Any], memfd: int, write_fd: int) -> None:
    """Run ``function``; pickle a non-``None`` result into ``memfd`` and its layout into the pipe."""
    result = function()
    if result is None:
        return
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    layout, offset = [], -(-len(header) // _ALIGN) * _ALIGN
    for raw in raws:
        layout.append((offset, raw.nbytes))
        offset += -(-raw.nbytes // _ALIGN) * _ALIGN
    os.ftruncate(memfd, max(offset, 1))
    os.pwrite(memfd, header, 0)
    for (start, _), raw in zip(layout, raws):
        view = raw
        while len(view):
            written = os.pwrite(memfd, view, start)
            view, start = view[written:], start + written
    _write_all(write_fd, pickle.dumps((len(header), layout), protocol=5))


class ForkedCall:
    """A function running in a forked child (:func:`start_forked`); :meth:`result` waits for it."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self._memfd = os.memfd_create("detkit-forked-result", os.MFD_CLOEXEC)
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no memory or process slots for a child
            for fd in (self._memfd, read_fd, write_fd):
                os.close(fd)
            raise
        if pid == 0:  # the child: never returns, never runs the parent's cleanup
            status = 1
            try:
                os.close(read_fd)
                _child(function, self._memfd, write_fd)
                status = 0
            except BaseException:  # noqa: BLE001, S110 - the parent redoes the work and reports any error
                pass
            finally:
                os._exit(status)
        os.close(write_fd)
        self._pid, self._read_fd = pid, read_fd

    def result(self) -> Any:
        """The child's result (its numpy arrays are read-only views of one shared mapping),
        or ``None`` when the function returned ``None`` or raised, or the child died."""
        try:
            try:
                message = _read_all(self._read_fd)
            finally:
                os.close(self._read_fd)
                os.waitpid(self._pid, 0)
            if not message:
                return None
            header_size, layout = pickle.loads(message)
            size = os.fstat(self._memfd).st_size
            # Read-only and shared: the arrays are the memfd's pages themselves (a writable private
            # mapping would be copied page by page). MAP_POPULATE: every page mapped here now, so
            # that DataLoader workers forked later share them (a page only a worker maps would
            # count as its own unique memory).
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            mapping = mmap.mmap(self._memfd, size, flags=flags, prot=mmap.PROT_READ)
        finally:
            os.close(self._memfd)  # the mapping keeps the memory alive as long as an array views it
        view = memoryview(mapping)
        buffers = [view[start:start + nbytes] for start, nbytes in layout]
        return pickle.loads(view[:header_size], buffers=buffers)


def start_forked(function: Callable[[], Any]) -> ForkedCall | None:
    """Start ``function()`` in a forked child (``None`` where :func:`fork_available` is false);
    several can run at once, each on its own core."""
    if not fork_available():
        return None
    try:
        return ForkedCall(function)
    except OSError:
        return None


def run_forked(function: Callable[[], T | None]) -> T | None:
    """``function()`` computed in a forked child and handed back without copying its arrays.

    Args:
        function: takes no argument and returns a picklable result (numpy arrays in it travel
            out of band), or ``None`` for "do it in the parent".

    Returns:
        The child's result (numpy arrays read-only), or ``None`` when fork is not available, the function returned
        ``None`` or raised, or the child died: the caller then calls it in its own process.
    """
    call = start_forked(function)
    return None if call is None else call.result()
