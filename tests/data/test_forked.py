"""detkit.data.forked: a function run in a forked child, its numpy arrays handed back through
one shared mapping (no copy), any failure answered ``None`` so the caller does the work itself."""

from __future__ import annotations

import os

import numpy as np
import pytest

from detkit.data.forked import fork_available, run_forked, start_forked

pytestmark = pytest.mark.skipif(not fork_available(), reason="needs fork and memfd_create, and no other thread")


def _result() -> dict:
    rng = np.random.default_rng(0)
    return {"pid": os.getpid(), "boxes": rng.random((1000, 4)).astype(np.float32),
            "ids": np.arange(7, dtype=np.int64), "bytes": np.frombuffer(b"abc" * 1000, dtype=np.uint8),
            "empty": np.zeros(0, dtype=np.int64), "text": "plain objects travel in band"}


def test_the_result_comes_back_from_a_child_as_views_of_one_mapping() -> None:
    result = run_forked(_result)
    expected = _result()
    assert result is not None and result["pid"] != os.getpid()  # computed in another process
    for key in ("boxes", "ids", "bytes", "empty"):
        assert result[key].dtype == expected[key].dtype and np.array_equal(result[key], expected[key])
    assert result["text"] == expected["text"]
    boxes = result["boxes"]
    assert boxes.base is not None and not boxes.flags.owndata  # a view of the mapping, not a copy
    assert boxes.ctypes.data % 16 == 0
    assert not boxes.flags.writeable  # the shared pages themselves: read-only
    with pytest.raises(ValueError, match="read-only"):
        boxes[0, 0] = 5.0


def test_two_children_run_at_once() -> None:
    calls = [start_forked(lambda k=k: np.full(10, k)) for k in range(2)]
    assert all(call is not None for call in calls)
    results = [call.result() for call in calls]
    assert [int(r[0]) for r in results] == [0, 1]


def _raises() -> None:
    raise ValueError("in the child")


def _crashes() -> None:
    os._exit(3)


@pytest.mark.parametrize("function", [_raises, _crashes, lambda: None, lambda: (lambda: 1)])  # the last: unpicklable
def test_any_failure_in_the_child_answers_none(function) -> None:
    assert run_forked(function) is None


def test_a_fork_that_fails_answers_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    before = len(os.listdir("/proc/self/fd"))
    assert run_forked(_result) is None and start_forked(_result) is None
    assert len(os.listdir("/proc/self/fd")) == before  # the memfd and the pipe closed


def test_another_thread_stops_the_fork_but_tqdms_monitor_does_not() -> None:
    import threading

    from tqdm import tqdm

    with tqdm(total=1, disable=False, mininterval=0, file=open(os.devnull, "w")) as bar:  # noqa: SIM115
        bar.update(1)
        assert any(type(t).__name__ == "TMonitor" for t in threading.enumerate())  # the bar started it
        assert fork_available()  # tqdm's monitor thread is no reason to refuse
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert not fork_available() and run_forked(_result) is None  # the caller parses in-process
    finally:
        release.set()
        worker.join()
    assert fork_available()
