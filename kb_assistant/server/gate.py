"""The server's generation queue: the model generates for one request at a time (``batch_max`` at a
time with a batching generator, :mod:`kb_assistant.answering.batching`); others wait in line.

Only the *generator* is gated: questions answered from the cache, refused by the unknown gate or
answered extractively never wait behind a generation. The gate wraps the generator the knowledge
base's query engine creates (``QueryEngine.generator_factory``); a knowledge-base object without a
query engine is gated per request instead. Waiting happens in worker threads, so the event loop (and
``/healthz``, ``/v1/search``) stays free while the model runs.

Every answer has a deadline (``[server] request_timeout_s`` after it arrived, set by :class:`Answerer`
in the worker thread): waiting past it is a 503; a generation still running at it is stopped (its
stream is closed, which stops the model at its next token) and the slot freed before the 504 goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from ..errors import ConfigError, KBError

logger = logging.getLogger(__name__)


class QueueFull(KBError):
    """Too many generation requests are waiting (served as HTTP 503)."""


class GenerationTimeout(KBError):
    """A generation ran past the request timeout and was stopped (served as HTTP 504)."""


@dataclass(frozen=True)
class Deadline:
    """When the current request must be done (``time.monotonic()``), and the timeout it came from."""

    at: float
    timeout_s: float

    @classmethod
    def after(cls, timeout_s: float) -> Deadline:
        return cls(time.monotonic() + timeout_s, timeout_s)

    def passed(self) -> bool:
        return time.monotonic() > self.at

    def error(self, started: float) -> GenerationTimeout:
        return GenerationTimeout(
            f"generation stopped after {time.monotonic() - started:.1f} s: the request timeout is "
            f"{self.timeout_s:g} s (raise [server] request_timeout_s in <kb>/config.toml or kb serve "
            f"--request-timeout)")


_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("kb_deadline", default=None)


@contextlib.contextmanager
def request_deadline(deadline: Deadline | None) -> Iterator[None]:
    """Run the block (in a worker thread) under ``deadline``; the gate and the gated generator read it."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def stop_at_deadline(pieces: Iterator[str], deadline: Deadline | None, gate: GenerationGate,
                     ) -> Iterator[str]:
    """Yield ``pieces`` until ``deadline``; past it, close them (stopping the model) and raise
    :class:`GenerationTimeout`."""
    started = time.monotonic()
    try:
        for piece in pieces:
            if deadline is not None and deadline.passed():
                gate.note_timeout()
                raise deadline.error(started)
            if piece:  # "" is a batcher's heartbeat while the request waits for its batch
                yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


class GenerationGate:
    """At most ``concurrency`` generations at a time; at most ``max_waiting`` callers wait for a slot, in
    arrival order (one more -> :class:`QueueFull`), each for at most ``timeout`` seconds. Thread-safe."""

    def __init__(self, concurrency: int = 1, max_waiting: int = 32, timeout: float = 300.0) -> None:
        if concurrency < 1:
            raise ConfigError(f"generation concurrency must be >= 1; got {concurrency}")
        if max_waiting < 0:
            raise ConfigError(f"generation queue size (max_waiting) must be >= 0; got {max_waiting}")
        self.concurrency, self.max_waiting, self.timeout = concurrency, max_waiting, timeout
        self._cond = threading.Condition()
        self._line: deque[object] = deque()
        self.running = self.served = self.rejected = self.timed_out = 0
        self.longest_hold_s = 0.0

    @property
    def waiting(self) -> int:
        return len(self._line)

    def _full(self) -> bool:
        return self.running >= self.concurrency and len(self._line) >= self.max_waiting

    def check(self) -> None:
        """Raise QueueFull if a new caller could not even wait (used before an event stream starts)."""
        with self._cond:
            if self._full():
                self.rejected += 1
                raise QueueFull(f"server busy: {self.running} generating, {self.waiting} waiting; "
                                "retry later")

    @contextlib.contextmanager
    def slot(self, deadline: Deadline | None = None) -> Iterator[None]:
        """Hold one generation slot; wait in line at most ``timeout`` s (and not past ``deadline``)."""
        ticket = object()
        with self._cond:
            if self._full():
                self.rejected += 1
                raise QueueFull(f"server busy: {self.running} generating, {self.waiting} waiting; "
                                "retry later")
            self._line.append(ticket)
            start = time.monotonic()
            until = start + self.timeout
            if deadline is not None:
                until = min(until, deadline.at)
            while not (self._line[0] is ticket and self.running < self.concurrency):
                remaining = until - time.monotonic()
                if remaining <= 0:
                    self._line.remove(ticket)
                    self.rejected += 1
                    self._cond.notify_all()
                    raise QueueFull(f"server busy: waited {time.monotonic() - start:.0f} s for the generator "
                                    "(the request timeout, [server] request_timeout_s); retry later")
                self._cond.wait(remaining)
            self._line.popleft()
            self.running += 1
            self._cond.notify_all()  # with concurrency > 1 the next in line may start too
        held = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self.served += 1
                self.longest_hold_s = max(self.longest_hold_s, time.monotonic() - held)
                self._cond.notify_all()

    def widen(self, concurrency: int) -> None:
        """Allow at least ``concurrency`` generations at a time (a batching generator arrived)."""
        with self._cond:
            if concurrency > self.concurrency:
                self.concurrency = concurrency
                self._cond.notify_all()

    def note_timeout(self) -> None:
        with self._cond:
            self.timed_out += 1

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"running": self.running, "waiting": len(self._line), "max_waiting": self.max_waiting,
                    "concurrency": self.concurrency, "served": self.served, "rejected": self.rejected,
                    "timed_out": self.timed_out, "longest_hold_s": round(self.longest_hold_s, 3)}


class GatedGenerator:
    """A generator whose ``generate``/``stream`` hold a slot of ``gate`` (the stream: until it is closed)."""

    def __init__(self, inner: Any, gate: GenerationGate) -> None:
        self.inner, self.gate = inner, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, messages: list[dict[str, str]], config: Any = None) -> Any:
        """Not stoppable (beam search): the deadline bounds only the wait for the slot."""
        with self.gate.slot(_DEADLINE.get()):
            return self.inner.generate(messages, config)

    def stream(self, messages: list[dict[str, str]], config: Any = None) -> Iterator[str]:
        deadline = _DEADLINE.get()
        with self.gate.slot(deadline):
            yield from stop_at_deadline(iter(self.inner.stream(messages, config)), deadline, self.gate)


def install_gate(kb: Any, gate: GenerationGate, wrap: Callable[[Any], Any] | None = None) -> bool:
    """Make ``kb``'s query engine generate through ``gate`` (and ``wrap``, e.g. a batcher, inside it).
    False if ``kb`` has no such engine."""
    try:
        engine = kb.engine
    except (AttributeError, ImportError) as exc:
        logger.info("no query engine to gate (%s): gating whole answers instead", exc)
        return False
    factory = getattr(engine, "generator_factory", None)
    if factory is None or not callable(factory):
        return False
    factory = getattr(factory, "kb_ungated", factory)  # a later app over the same kb takes over

    def wrapped(generator: Any) -> Any:
        generator = getattr(generator, "unbatched", generator)  # an earlier app's batcher
        return wrap(generator) if wrap is not None else generator

    def gated_factory() -> GatedGenerator:
        return GatedGenerator(wrapped(factory()), gate)

    gated_factory.kb_ungated = factory  # type: ignore[attr-defined]
    engine.generator_factory = gated_factory
    current = getattr(engine, "_generator", None)  # created before the server started
    if isinstance(current, GatedGenerator):
        current.gate, current.inner = gate, wrapped(current.inner)
    elif current is not None:
        engine._generator = GatedGenerator(wrapped(current), gate)
    return True


class _RequestGated:
    """``kb.ask_stream`` holding a gate slot for the whole stream (knowledge bases without an engine)."""

    def __init__(self, make: Callable[[], Any], gate: GenerationGate) -> None:
        self.make, self.gate, self.stream = make, gate, None

    def __iter__(self) -> Iterator[str]:
        deadline = _DEADLINE.get()
        with self.gate.slot(deadline):
            self.stream = self.make()
            yield from stop_at_deadline(iter(self.stream), deadline, self.gate)

    @property
    def answer(self) -> Any:
        return getattr(self.stream, "answer", None)


class Answerer:
    """Runs ``kb.ask``/``kb.ask_stream`` in worker threads through the generation gate."""

    def __init__(self, kb: Any, gate: GenerationGate, worker_threads: int,
                 wrap: Callable[[Any], Any] | None = None) -> None:
        self.kb, self.gate = kb, gate
        self.per_request = not install_gate(kb, gate, wrap)
        self.limiter = anyio.CapacityLimiter(worker_threads)

    async def ask(self, question: str, params: dict[str, Any], deadline: Deadline | None = None) -> Any:
        def call() -> Any:
            with request_deadline(deadline):
                if self.per_request:
                    with self.gate.slot(deadline):
                        return self.kb.ask(question, **params)
                return self.kb.ask(question, **params)

        return await anyio.to_thread.run_sync(call, limiter=self.limiter)

    def stream(self, question: str, params: dict[str, Any], deadline: Deadline | None = None,
               ) -> AsyncIterator[tuple[str, Any]]:
        def make() -> Any:
            return self.kb.ask_stream(question, **params)

        factory = (lambda: _RequestGated(make, self.gate)) if self.per_request else make
        return iterate_in_thread(factory, self.limiter, deadline)


async def iterate_in_thread(make_stream: Callable[[], Any], limiter: anyio.CapacityLimiter | None = None,
                            deadline: Deadline | None = None) -> AsyncIterator[tuple[str, Any]]:
    """Run ``make_stream()`` and iterate it in a worker thread (under ``deadline``); yield ("delta",
    piece) for each piece, then ("done", stream) or ("error", exception). Closing this iterator early
    (client gone) stops the worker at its next piece and waits for it, so the generator's slot is freed
    only once it stopped."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening any more
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        with request_deadline(deadline):
            produce()

    def produce() -> None:
        try:
            stream = make_stream()
            iterator = iter(stream)
            try:
                for piece in iterator:
                    if stop.is_set():
                        break
                    put(("delta", piece))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            put(("done", stream))
        except BaseException as exc:  # reported to the client as an error event
            put(("error", exc))

    task = asyncio.ensure_future(anyio.to_thread.run_sync(work, limiter=limiter))
    try:
        while True:
            kind, payload = await queue.get()
            yield kind, payload
            if kind != "delta":
                return
    finally:
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)
