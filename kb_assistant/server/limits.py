"""Request limits of the REST server: every text field, the whole conversation, a token budget, bodies.

The limits come from the ``[server]`` section (:class:`~kb_assistant.config.ServerConfig`; ``kb serve``
flags override it). Each refusal is HTTP 413 with a one-line reason that names the limit and how to
raise it. Fields that no caller needs long (group names, the model name, document ids, filter values)
share one fixed cap, :data:`FIELD_CHARS`. Requests are checked before anything runs: retrieval, the
generator and the upload folder see only requests within the limits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import KBError

if TYPE_CHECKING:
    from ..config import ServerConfig

#: group names, model names, document ids, filter values, form fields
FIELD_CHARS = 256
#: groups in one request, values of one filter, keys of the filters
MAX_ITEMS = 64
#: files in one upload request
MAX_UPLOAD_FILES = 20
#: JSON escapes (``\\uXXXX``) make a body at most 6 bytes per character of text, plus the rest
_BYTES_PER_CHAR = 6
_BODY_SLACK = 64 * 1024

#: the ``kb serve`` flag of a setting, where there is one
FLAGS = {"max_upload_mb": "--max-upload-mb", "request_timeout_s": "--request-timeout",
         "rate_limit_per_minute": "--rate-limit", "queue_size": "--queue"}


class RequestTooLarge(KBError):
    """A request exceeds one of the server's limits (served as HTTP 413)."""


def how_to_raise(setting: str) -> str:
    """"raise [server] NAME in <kb>/config.toml (or kb serve --flag)"."""
    flag = FLAGS.get(setting)
    return f"raise [server] {setting} in <kb>/config.toml" + (f" or kb serve {flag}" if flag else "")


def _fixed(what: str, got: int, limit: int, unit: str) -> RequestTooLarge:
    return RequestTooLarge(f"{what} has {got:,} {unit}; the limit is {limit:,} (fixed)")


@dataclass(frozen=True)
class Limits:
    """The limits of one server, with the checks every route runs."""

    config: ServerConfig
    max_upload_bytes: int

    @classmethod
    def of(cls, config: ServerConfig, max_upload_bytes: int | None = None) -> Limits:
        upload = max_upload_bytes if max_upload_bytes is not None else int(config.max_upload_mb * 2**20)
        return cls(config, upload)

    @property
    def body_bytes(self) -> int:
        """The largest JSON body: every text allowed, escaped, plus room for the other fields."""
        c = self.config
        return _BYTES_PER_CHAR * (c.max_question_chars + c.max_conversation_chars) + _BODY_SLACK

    @property
    def upload_request_bytes(self) -> int:
        return self.max_upload_bytes * MAX_UPLOAD_FILES + _BODY_SLACK

    def too_large(self, what: str, got: int, setting: str, unit: str = "characters") -> RequestTooLarge:
        limit = getattr(self.config, setting)
        return RequestTooLarge(f"{what} has {got:,} {unit}; the limit is {limit:,} ({how_to_raise(setting)})")

    def body_error(self, got: int | None, upload: bool) -> RequestTooLarge:
        if upload:
            return RequestTooLarge(
                f"upload request exceeds {self.upload_request_bytes:,} bytes ({MAX_UPLOAD_FILES} files of "
                f"at most {self.max_upload_bytes:,} bytes; {how_to_raise('max_upload_mb')})")
        size = f"{got:,} bytes" if got is not None else f"more than {self.body_bytes:,} bytes"
        return RequestTooLarge(f"request body has {size}; the limit is {self.body_bytes:,}, set by [server] "
                               "max_question_chars and max_conversation_chars (raise them in config.toml)")

    def upload_error(self, name: str) -> RequestTooLarge:
        return RequestTooLarge(f"{name}: file exceeds the upload limit of {self.max_upload_bytes:,} bytes "
                               f"({how_to_raise('max_upload_mb')})")

    # -- fields ----------------------------------------------------------------------------------------
    def question(self, what: str, text: str) -> None:
        if len(text) > self.config.max_question_chars:
            raise self.too_large(what, len(text), "max_question_chars")

    def conversation(self, earlier: Sequence[str]) -> None:
        """The messages before the question: each and all together within ``max_conversation_chars``."""
        total = sum(len(m) for m in earlier)
        if total > self.config.max_conversation_chars:
            raise self.too_large(f"the conversation ({len(earlier)} earlier messages)", total,
                                 "max_conversation_chars")

    @staticmethod
    def field(what: str, value: str | None) -> None:
        if value is not None and len(value) > FIELD_CHARS:
            raise _fixed(what, len(value), FIELD_CHARS, "characters")

    @staticmethod
    def items(what: str, values: Sequence[Any] | None) -> None:
        if values is None:
            return
        if len(values) > MAX_ITEMS:
            raise _fixed(what, len(values), MAX_ITEMS, "items")
        for value in values:
            Limits.field(what, str(value))

    @staticmethod
    def filters(filters: dict[str, Any] | None) -> None:
        """Search filters: a few keys, each a value or a short list of short values."""
        if not filters:
            return
        Limits.items("filters", list(filters))
        for key, value in filters.items():
            if isinstance(value, dict):
                raise RequestTooLarge(f"filter {key!r} must be a value or a list of values, not an object")
            Limits.items(f"filter {key!r}", value if isinstance(value, list) else [value])

    def tokens(self, kb: Any, text: str) -> None:
        """The token budget of the text that retrieval embeds and the generator reads, counted by the
        knowledge base's embedder (skipped for objects without one)."""
        budget = self.config.max_question_tokens
        if 4 * len(text) + 2 <= budget:  # no tokenizer makes more than 4 tokens of a character (UTF-8 bytes)
            return
        embedder = getattr(kb, "embedder", None)
        count = getattr(embedder, "count_tokens", None)
        if count is None:
            return
        n = int(count([text])[0])
        if n > budget:
            raise self.too_large("the question with its conversation terms", n, "max_question_tokens",
                                 unit="tokens")


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
