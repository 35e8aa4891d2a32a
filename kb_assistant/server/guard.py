"""What every request passes before a route runs (an ASGI middleware in front of the app).

1. Without API keys (local mode) the server trusts its callers, so it makes sure the caller is local:
   the ``Host`` header must name this server (localhost, 127.0.0.1, ::1, the bound address or one of
   ``[server] allowed_hosts``; anything else, e.g. a DNS-rebinding ``evil.example``, gets 421), and a
   request that changes something (any method but GET/HEAD/OPTIONS) from a browser must come from the
   server's own page: an ``Origin`` of another site or ``Sec-Fetch-Site: cross-site``/``same-site`` gets
   403. Clients that are not browsers send neither header and are not affected.
2. Rate limit: a token bucket per API key (per client address without keys) refills at
   ``[server] rate_limit_per_minute`` and holds a tenth of it; an empty bucket is a 429 with
   ``Retry-After``.
3. Body size: a ``/v1`` body larger than the limits allow is a 413 before it is read (``Content-Length``)
   or as soon as it grows past them (chunked bodies).
4. The server follows the knowledge base: each ``/v1`` request first calls ``kb.refresh()`` (one read of
   the docstore's change counter; the indexes are re-opened after an ingest by another process).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import HTTPException
from starlette.datastructures import Headers

from ..errors import AccessDenied
from .common import error_body, groups_for_key, key_from_headers
from .limits import how_to_raise, retry_after

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets keyed by caller: ``per_minute`` requests a minute, bursts of ``burst``. Thread-safe."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.per_minute = float(per_minute)
        self.rate = self.per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, round(self.per_minute / 10)))
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, caller: str, now: float | None = None) -> float:
        """Spend one token of ``caller``: 0.0 when allowed, else the seconds until a token is back."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
                self.refused += 1
            self._buckets[caller] = (tokens, now)
            while len(self._buckets) > _MAX_BUCKETS:  # forget the least recently seen callers
                self._buckets.popitem(last=False)
            return wait

    def message(self, wait: float, keyed: bool) -> str:
        who = "this API key" if keyed else "this client"
        return (f"rate limit: {who} sent more than {self.per_minute:g} requests a minute (bursts of "
                f"{self.burst:g}); retry in {retry_after(wait)} s ({how_to_raise('rate_limit_per_minute')})")


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc, lower-case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def local_refusal(method: str, headers: Headers, allowed_hosts: set[str]) -> tuple[int, str] | None:
    """Why a request to a server without API keys is refused (status, reason), or None."""
    host = headers.get("host", "")
    if host_name(host) not in allowed_hosts:
        return 421, (f"Host {host!r} is not an address of this server (DNS-rebinding protection); a server "
                     "without API keys answers only localhost: add the name to [server] allowed_hosts")
    if method in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site", "").lower()
    origin = headers.get("origin")
    if site in ("cross-site", "same-site"):
        return 403, (f"cross-site request refused (Sec-Fetch-Site: {site}): without API keys only the "
                     "server's own page may send it")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or parts.netloc.lower() != host.strip().lower():
            return 403, (f"cross-origin request refused: Origin {origin!r} is not this server; without API "
                         "keys only the server's own page may send it")
    return None


async def respond(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _limited(receive: Receive, limit: int, error: Callable[[], Exception]) -> Receive:
    """``receive`` that fails the request (413) once the body grows past ``limit`` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                exc = error()
                raise HTTPException(413, str(exc))
        return message

    return wrapped


class Guard:
    """The ASGI middleware (see the module docstring); ``state`` is the app's ServerState."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state

    def caller_id(self, scope: Scope, headers: Headers) -> tuple[str, bool]:
        """The rate-limit bucket of a request: its API key when valid, else its client address."""
        keys = self.state.api_keys
        key = key_from_headers(headers) if keys is not None else None
        if key is not None:
            try:
                groups_for_key(keys, key)
                return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24], True
            except AccessDenied:
                pass
        client = scope.get("client") or ("?", 0)
        return f"addr:{client[0]}", False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = self.state
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        if st.api_keys is None:
            refusal = local_refusal(method, headers, st.allowed_hosts)
            if refusal is not None:
                logger.warning("refused %s %s: %s", method, path, refusal[1])
                await respond(send, *refusal)
                return
        if path.startswith("/v1/"):
            caller, keyed = self.caller_id(scope, headers)
            wait = st.rate.take(caller)
            if wait:
                await respond(send, 429, st.rate.message(wait, keyed), {"Retry-After": retry_after(wait)})
                return
            upload = path == "/v1/documents" and method == "POST"
            limit = st.limits.upload_request_bytes if upload else st.limits.body_bytes
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                await respond(send, 413, str(st.limits.body_error(int(length), upload)))
                return
            receive = _limited(receive, limit, lambda: st.limits.body_error(None, upload))
            await anyio.to_thread.run_sync(st.follow_kb)
        await self.app(scope, receive, send)
