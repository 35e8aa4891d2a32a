"""The lazy-loading helper: one build under concurrent first use, peek without building, reset."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kb_assistant.lazy import Lazy


class _Model:
    pass


def test_factory_runs_once_under_concurrent_get():
    calls = []
    started = threading.Event()

    def factory():
        calls.append(threading.get_ident())
        started.set()
        time.sleep(0.05)  # a slow model load: the other threads arrive while it runs
        return _Model()

    lazy = Lazy(factory)
    barrier = threading.Barrier(8)

    def use():
        barrier.wait()
        return lazy.get()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: use(), range(8)))
    assert len(calls) == 1 and started.is_set()
    assert all(g is got[0] for g in got)  # every caller waited for the same object
    assert lazy.get() is got[0] and len(calls) == 1


def test_peek_never_builds_and_loaded_tracks_state():
    calls = []
    lazy = Lazy(lambda: calls.append(1) or "value")
    assert lazy.peek() is None and not lazy.loaded and calls == []
    assert lazy.get() == "value" and lazy.loaded and lazy.peek() == "value"
    assert calls == [1]


def test_a_factory_returning_none_is_built_once():
    calls = []
    lazy = Lazy(lambda: calls.append(1))  # returns None
    assert lazy.get() is None and lazy.get() is None
    assert calls == [1] and lazy.loaded


def test_reset_rebuilds_on_next_get():
    made = []

    def factory():
        made.append(_Model())
        return made[-1]

    lazy = Lazy(factory)
    first = lazy.get()
    lazy.reset()
    assert not lazy.loaded and lazy.peek() is None and len(made) == 1  # reset itself builds nothing
    second = lazy.get()
    assert second is not first and len(made) == 2


def test_a_failing_factory_is_retried_on_the_next_get():
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("model file busy")
        return "ok"

    lazy = Lazy(factory)
    with pytest.raises(OSError, match="busy"):
        lazy.get()
    assert not lazy.loaded and lazy.peek() is None
    assert lazy.get() == "ok" and len(attempts) == 2
