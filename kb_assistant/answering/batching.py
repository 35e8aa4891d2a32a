"""Dynamic batching: generations requested by concurrent threads run together in one forward pass.

:class:`Batcher` wraps a generator and has its interface (``generate``, ``stream``, ``count_tokens``,
``render``), so the query engine does not know it is there. A request is queued; one worker thread
takes the oldest, waits up to ``batch_wait_ms`` for more with the same decoding parameters (at most
``batch_max`` in all) and runs them with the generator's ``generate_batch`` (left padding, per-row
streaming and stopping: a closed stream stops its row at the next token, the others go on).
Streams are batched too: the engine streams internally to stop a drifting answer early. Requests
that cannot share a pass (beam search, a seed) run alone, as do generators without
``generate_batch`` (a remote server batches on its side: calls pass straight through).
While a request waits, its stream yields ``""`` every ``HEARTBEAT_S`` so the caller can check its
deadline; the server's gate skips those pieces.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..config import GenerationConfig
from ..errors import ConfigError

logger = logging.getLogger(__name__)

HEARTBEAT_S = 0.5
_END = object()


class _Request:
    """One queued generation: its prompt, its decoding parameters and the queue its text goes to."""

    def __init__(self, messages: list[dict[str, str]], config: GenerationConfig) -> None:
        from ..generation_batch import batch_key, batchable

        self.messages, self.config = messages, config
        self.key = batch_key(config) if batchable(config) else None
        self.out: queue.Queue[Any] = queue.Queue()
        self.cancelled = threading.Event()
        self.started = threading.Event()

    # RowSink
    def put(self, text: str) -> None:
        self.out.put(text)

    def end(self) -> None:
        self.out.put(_END)

    def fail(self, exc: BaseException) -> None:
        self.out.put(exc)
        self.out.put(_END)


class Batcher:
    """``inner`` with concurrent ``generate``/``stream`` calls batched (see the module docstring)."""

    def __init__(self, inner: Any, batch_max: int = 8, batch_wait_ms: float = 20.0) -> None:
        if batch_max < 1:
            raise ConfigError(f"batch_max must be >= 1; got {batch_max}")
        if batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0; got {batch_wait_ms}")
        self.inner, self.batch_max, self.batch_wait_s = inner, batch_max, batch_wait_ms / 1000.0
        self.local = hasattr(inner, "generate_batch") and batch_max > 1
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches = self.batched_requests = self.largest_batch = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def unbatched(self) -> Any:
        """The wrapped generator."""
        return self.inner

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.inner.render(messages)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"batch_max": self.batch_max, "batches": self.batches, "waiting": len(self._queue),
                    "requests": self.batched_requests, "largest_batch": self.largest_batch}

    # -- public interface
    def generate(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> str:
        config = config or GenerationConfig()
        if not self.local:
            return self.inner.generate(messages, config)
        from ..text import truncate_sentences

        text = "".join(self.stream(messages, config))
        return truncate_sentences(text, config.max_sentences)

    def stream(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> Iterator[str]:
        """Text pieces of this request (``""`` while it waits); closing the iterator stops its row."""
        config = config or GenerationConfig()
        if not self.local:
            yield from self.inner.stream(messages, config)
            return
        req = _Request(messages, config)
        self._submit(req)
        try:
            while True:
                try:
                    item = req.out.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    yield ""
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            req.cancelled.set()
            with self._cond:
                if req in self._queue:  # never started: leave the line
                    self._queue.remove(req)

    # -- the worker
    def _submit(self, req: _Request) -> None:
        with self._cond:
            self._queue.append(req)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="kb-batcher", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _take(self) -> list[_Request]:
        """The next batch: the oldest request and up to ``batch_max - 1`` later ones with its key,
        waiting at most ``batch_wait_s`` after the oldest for them to arrive; [] after 30 s idle."""
        with self._cond:
            while True:
                while not self._queue:
                    if not self._cond.wait(timeout=30.0) and not self._queue:
                        self._worker = None  # idle: the next request starts a new worker
                        return []
                first = self._queue[0]
                if first.key is None:
                    return [self._queue.pop(0)]
                until = time.monotonic() + self.batch_wait_s
                while first in self._queue:  # else it was cancelled while waiting: start again
                    same = [r for r in self._queue if r.key == first.key][: self.batch_max]
                    remaining = until - time.monotonic()
                    if len(same) >= self.batch_max or remaining <= 0:
                        for r in same:
                            self._queue.remove(r)
                        self.batches += 1
                        self.batched_requests += len(same)
                        self.largest_batch = max(self.largest_batch, len(same))
                        return same
                    self._cond.wait(remaining)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            batch = [r for r in batch if not r.cancelled.is_set()]
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                self._run_one(batch[0])
            else:
                self.inner.generate_batch([r.messages for r in batch], batch[0].config, sinks=batch)
        except Exception as exc:  # noqa: BLE001 - reported to each waiting caller
            logger.exception("batched generation failed")
            for r in batch:
                r.fail(exc)

    def _run_one(self, req: _Request) -> None:
        """One request alone: the generator's own path (prefix cache, beam search)."""
        if req.config.num_beams > 1:
            req.put(self.inner.generate(req.messages, req.config))
            req.end()
            return
        stream = self.inner.stream(req.messages, req.config)
        try:
            for piece in stream:
                if req.cancelled.is_set():
                    break
                req.put(piece)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            req.end()
