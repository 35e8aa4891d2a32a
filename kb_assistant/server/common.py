"""Shared pieces of the REST server: API keys -> ACL groups, answer/hit JSON, paths as clients see them,
error bodies and statuses.

Kept free of route definitions so ``app.py`` (native API), ``openai_api.py`` (OpenAI-compatible API),
``uploads.py`` and ``guard.py`` share one notion of caller, payload, path and error.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from ..errors import AccessDenied, ConfigError
from .gate import GenerationTimeout, QueueFull
from .limits import RequestTooLarge

logger = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: uploaded files live under ``<kb>/uploads/<owner>/`` (see :mod:`kb_assistant.server.uploads`)
UPLOAD_DIR = "uploads"


# -- API keys ------------------------------------------------------------------------------------------
def load_api_keys(source: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None,
                  ) -> dict[str, list[str]] | None:
    """API keys from a JSON file (or a mapping): ``{"key": ["group", ...], ...}``. None -> no keys."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        data: Any = dict(source)
        where = "api_keys"
    else:
        where = str(source)
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"API key file not found: {where}") from exc
        except (OSError, ValueError) as exc:
            raise ConfigError(f"API key file {where} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where} must be a non-empty JSON object mapping API key -> list of groups")
    keys: dict[str, list[str]] = {}
    for key, groups in data.items():
        if not isinstance(key, str) or len(key) < 8:
            raise ConfigError(f"{where}: every API key must be a string of at least 8 characters")
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise ConfigError(f"{where}: the groups of key {key[:4]}… must be a list of non-empty strings")
        keys[key] = list(groups)
    return keys


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer KEY`` (what OpenAI clients send) or ``X-API-Key: KEY``."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


def groups_for_key(keys: dict[str, list[str]], key: str | None) -> list[str]:
    """The ACL groups of ``key`` (compared in constant time); AccessDenied when unknown."""
    if key is None:
        raise AccessDenied("missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    found: list[str] | None = None
    for candidate, groups in keys.items():
        if hmac.compare_digest(candidate.encode(), key.encode()):
            found = groups
    if found is None:
        raise AccessDenied("invalid API key")
    return found


def effective_groups(caller: list[str] | None, requested: Sequence[str] | None) -> list[str] | None:
    """Groups to search with. ``caller`` None = trusted local caller (no keys configured): the request's
    own ``groups`` (or None, no restriction). With a key, a request may narrow its groups, never widen."""
    if caller is None:
        return list(requested) if requested is not None else None
    if requested is None:
        return list(caller)
    extra = set(requested) - set(caller)
    if extra:
        raise AccessDenied(f"API key does not grant group(s): {', '.join(sorted(extra))}")
    return list(requested)


def state_of(request: Request) -> Any:
    """The :class:`~kb_assistant.server.ServerState` of the app serving ``request``."""
    return request.app.state.kb_server


def caller_groups(request: Request) -> list[str] | None:
    """FastAPI dependency: the caller's ACL groups (None = trusted local caller, no keys configured)."""
    keys = state_of(request).api_keys
    if keys is None:
        return None
    return groups_for_key(keys, key_from_headers(request.headers))


#: route parameter type of the caller's groups
Caller = Annotated[list[str] | None, Depends(caller_groups)]


# -- payloads ---------------------------------------------------------------------------------------------
class PathView:
    """Document paths as API clients see them, never absolute: uploads relative to the knowledge base
    (``uploads/hr/plan.txt``), other files relative to the deepest folder holding every ingested file
    (``policies/vpn.md``). That folder is recomputed when the docstore changes."""

    def __init__(self, kb: Any) -> None:
        self.kb = kb
        kb_path = getattr(kb, "path", None)
        self.uploads = os.path.realpath(os.path.join(kb_path, UPLOAD_DIR)) if kb_path else None
        self._lock = threading.Lock()
        self._version: Any = object()
        self._root: str | None = None

    def is_upload(self, path: str) -> bool:
        return self.uploads is not None and path.startswith(self.uploads + os.sep)

    def root(self) -> str | None:
        version = getattr(self.kb, "version", None)
        with self._lock:
            if version != self._version:
                docs = self.kb.documents() if hasattr(self.kb, "documents") else []
                folders = [os.path.dirname(str(d.get("path", ""))) for d in docs]
                folders = [f for f in folders if f and not self.is_upload(f + os.sep)]
                self._root = os.path.commonpath(folders) if folders else None
                self._version = version
            return self._root

    def show(self, path: Any) -> str:
        text = str(path or "")
        if not os.path.isabs(text):
            return text
        if self.is_upload(text):
            return UPLOAD_DIR + "/" + Path(os.path.relpath(text, self.uploads)).as_posix()
        root = self.root()
        if root and (text + os.sep).startswith(root.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(text, root)).as_posix()
        return os.path.basename(text)

    def scrub(self, message: str, paths: Iterable[str]) -> str:
        """``message`` with each of ``paths`` shown as a client sees it."""
        for path in sorted(set(paths), key=len, reverse=True):
            message = message.replace(path, self.show(path))
        return message


def hit_json(hit: Any, n: int | None = None, paths: PathView | None = None) -> dict[str, Any]:
    """A hit for clients: the KB's Hit fields (``source`` as :class:`PathView` shows it) plus ``file``
    (base name) and, in answers, its number."""
    data = hit.to_dict() if hasattr(hit, "to_dict") else dict(hit)
    data["file"] = os.path.basename(str(data.get("source", "")))
    if paths is not None:
        data["source"] = paths.show(data.get("source"))
    data["score"] = round(float(data.get("score", 0.0)), 4)
    if n is not None:
        data["n"] = n
    return data


@dataclass
class AnswerPayload:
    """The parts of an Answer the server returns (duck-typed: works with any object with these attributes)."""

    text: str
    unknown: bool
    mode: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    citations: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    #: the answer passed the evidence post-check (a streamed answer may fail it after being shown)
    supported: bool = True

    @classmethod
    def of(cls, answer: Any, fallback_text: str = "", paths: PathView | None = None) -> AnswerPayload:
        if answer is None:  # a stream that ended without a final Answer
            return cls(text=fallback_text, unknown=False, mode="generated")
        sources = [hit_json(h, n, paths) for n, h in enumerate(getattr(answer, "sources", []) or [], start=1)]
        citations = sorted(int(n) for n in (getattr(answer, "citations", None) or {}))
        timings = {k: round(float(v), 1) for k, v in (getattr(answer, "timings", None) or {}).items()}
        return cls(text=str(answer.text), unknown=bool(answer.unknown), mode=str(getattr(answer, "mode", "")),
                   sources=sources, citations=citations, timings=timings,
                   cached=bool(getattr(answer, "cached", False)),
                   supported=bool(getattr(answer, "supported", True)) or bool(answer.unknown))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "unknown": self.unknown, "mode": self.mode, "sources": self.sources,
                "citations": self.citations, "timings": self.timings, "cached": self.cached,
                "supported": self.supported}

    def references(self) -> str:
        """A plain-text list of the cited passages, appended to OpenAI-style answers."""
        if self.unknown or not self.sources:
            return ""
        cited = [s for s in self.sources if s["n"] in self.citations] or self.sources
        lines = [f"[{s['n']}] {s['file']}" + (f", p. {s['page']}" if s.get("page") else "") for s in cited]
        return "\n\nSources:\n" + "\n".join(lines)


def history_query(question: str, previous_user_messages: Iterable[str]) -> str:
    """The standalone search query of ``question`` after a conversation: each earlier user message
    is rewritten against the one before it, as :class:`ChatSession` does, and the last one is used."""
    from ..answering.chat import rewrite_followup

    query: str | None = None
    for text in previous_user_messages:
        if text.strip():
            query = rewrite_followup(text, query)
    return rewrite_followup(question, query)


def error_status(exc: BaseException) -> int:
    """The HTTP status of an exception raised while answering a request."""
    if isinstance(exc, QueueFull):
        return 503
    if isinstance(exc, GenerationTimeout):
        return 504
    if isinstance(exc, RequestTooLarge):
        return 413
    if isinstance(exc, AccessDenied):
        return 401 if str(exc).startswith(("missing API key", "invalid API key")) else 403
    if isinstance(exc, ConfigError):
        return 400
    return 500


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "invalid_request_error", 421: "invalid_request_error",
                429: "rate_limit_error", 503: "server_busy", 504: "timeout"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """The JSON body of an error: ``detail`` for FastAPI-style clients, ``error`` for OpenAI clients
    (they read ``error.message``)."""
    return {"detail": message, "error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"),
                                         "code": status}}
