"""What the routes of one server share: the knowledge base, the API keys, the limits and the queue.

The settings are the knowledge base's ``[server]`` section (:class:`~kb_assistant.config.ServerConfig`),
then ``create_app(config=...)``, then the explicit keyword arguments of ``create_app`` (what the
``kb serve`` flags set).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..config import ServerConfig
from ..errors import ConfigError
from .common import LOCAL_HOSTS, PathView
from .gate import Answerer, Deadline, GenerationGate
from .guard import RateLimiter
from .limits import Limits

logger = logging.getLogger(__name__)


def server_config(kb: Any, config: ServerConfig | dict[str, Any] | None = None, **overrides: Any,
                  ) -> ServerConfig:
    """The knowledge base's ``[server]`` settings with ``config`` and the non-None ``overrides`` applied."""
    kb_config = getattr(kb, "config", None)
    base = getattr(kb_config, "server", None)
    if not isinstance(base, ServerConfig):
        base = ServerConfig()
    if isinstance(config, ServerConfig):
        base = config
    elif isinstance(config, dict):
        base = ServerConfig.from_dict({**base.to_dict(), **config})
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.replace(**changes) if changes else base


class ServerState:
    """The parts every route reads; built once by :func:`~kb_assistant.server.create_app`."""

    def __init__(self, kb: Any, api_keys: dict[str, list[str]] | None, config: ServerConfig, *,
                 model_name: str = "kb-assistant", max_upload_bytes: int | None = None,
                 generation_concurrency: int = 1, queue_timeout: float | None = None,
                 bind_hosts: Iterable[str] = ()) -> None:
        if max_upload_bytes is not None and max_upload_bytes < 1:
            raise ConfigError(f"max_upload_bytes must be >= 1; got {max_upload_bytes}")
        self.kb, self.api_keys, self.config, self.model_name = kb, api_keys, config, model_name
        self.limits = Limits.of(config, max_upload_bytes)
        wait = config.request_timeout_s
        if queue_timeout is not None:
            wait = min(wait, queue_timeout)
        self.queue = GenerationGate(generation_concurrency, config.queue_size, wait)
        self.batchers: list[Any] = []
        threads = config.queue_size + max(generation_concurrency, config.batch_max) + 8
        wrap = self._batcher if config.batch_max > 1 else None
        self.answerer = Answerer(kb, self.queue, worker_threads=threads, wrap=wrap)
        self.rate = RateLimiter(config.rate_limit_per_minute)
        self.paths = PathView(kb)
        hosts = (*LOCAL_HOSTS, *config.allowed_hosts, *bind_hosts)
        self.allowed_hosts = {h.strip("[]").lower() for h in hosts}
        #: uploads replace files under uploads/: one upload at a time per server (ingest is serialised anyway)
        self.upload_lock = threading.Lock()
        self.started = time.time()
        self.reloads = 0
        self._retry_at = 0.0
        self.follow_kb()  # open the indexes now, under the knowledge base's lock

    def _batcher(self, generator: Any) -> Any:
        """``generator`` batched, when it can batch (a local model) or serve calls concurrently (a
        remote server): the gate then lets ``batch_max`` answers through together."""
        if not (hasattr(generator, "generate_batch") or getattr(generator, "concurrent", False)):
            return generator
        from ..answering.batching import Batcher

        batcher = Batcher(generator, self.config.batch_max, self.config.batch_wait_ms)
        self.batchers = [batcher]
        self.queue.widen(self.config.batch_max)
        return batcher

    def batching(self) -> dict[str, Any]:
        """The batcher's counters (``/healthz``); ``batch_max`` 1 when batching is off."""
        if not self.batchers:
            return {"batch_max": self.config.batch_max}
        return self.batchers[0].stats()

    @property
    def max_upload_bytes(self) -> int:
        return self.limits.max_upload_bytes

    def deadline(self) -> Deadline:
        """The deadline of a request arriving now."""
        return Deadline.after(self.config.request_timeout_s)

    def follow_kb(self) -> None:
        """Pick up changes other processes made to the knowledge base (``kb.refresh()``; in a worker
        thread, before each ``/v1`` request). A refresh that fails is logged and retried 5 s later; the
        server keeps answering from what it has meanwhile."""
        refresh = getattr(self.kb, "refresh", None)
        if refresh is None or time.monotonic() < self._retry_at:
            return
        try:
            if refresh():
                self.reloads += 1
                logger.info("%s changed on disk: indexes re-opened (docstore version %s)",
                            getattr(self.kb, "path", "the knowledge base"), getattr(self.kb, "version", "?"))
            self.paths.root()  # recomputed here, off the event loop, when the documents changed
        except Exception:  # noqa: BLE001 - a request must not fail because a reload did
            self._retry_at = time.monotonic() + 5.0
            logger.exception("re-opening the indexes of %s failed; retrying in 5 s",
                             getattr(self.kb, "path", "the knowledge base"))
