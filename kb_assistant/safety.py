"""Safety: sensitive-word refusal/masking, PII redaction, a redacting log filter, a JSONL audit log.

PII kinds and their placeholders: e-mail -> ``[EMAIL]``, Chinese resident ID (18 chars, last may be
X) -> ``[ID]``, payment card (13-19 digits, Luhn-valid) -> ``[CARD]``, phone numbers (Chinese mobile
``1[3-9]\\d{9}`` with optional +86, international ``+CC ...``, North-American formats) -> ``[PHONE]``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .config import SafetyConfig

logger = logging.getLogger(__name__)

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CN_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                       r"\d{3}[0-9Xx](?![0-9A-Za-z])")
_CARD_RE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PHONE_RES = (
    re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)"),
    re.compile(r"(?<![\w+])\+\d{1,3}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{2,4}(?:[ -]?\d{2,4}){1,3}(?!\d)"),
    re.compile(r"(?<!\d)\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"),
)


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a digit string (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return "[CARD]"
    return match.group(0)


def redact(text: str) -> str:
    """Replace e-mails, Chinese IDs, card numbers and phone numbers in ``text`` with placeholders."""
    if not text:
        return text
    text = _EMAIL_RE.sub("[EMAIL]", text)
    text = _CN_ID_RE.sub("[ID]", text)
    text = _PHONE_RES[0].sub("[PHONE]", text)  # Chinese mobiles first: "+86 138..." could pass Luhn
    text = _CARD_RE.sub(_card_sub, text)
    for pattern in _PHONE_RES[1:]:
        text = pattern.sub("[PHONE]", text)
    return text


class SafetyFilter:
    """Apply a :class:`SafetyConfig` to questions and answers."""

    def __init__(self, config: SafetyConfig | None = None) -> None:
        self.config = config or SafetyConfig()
        words = sorted({w.strip().lower() for w in self.config.words()}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None

    def find_sensitive(self, text: str) -> list[str]:
        """The sensitive words found in ``text`` (case-insensitive substring match)."""
        if self._pattern is None or not text:
            return []
        return sorted({m.group(0).lower() for m in self._pattern.finditer(text)})

    def check_question(self, question: str, lang: str = "en") -> str | None:
        """The refusal text when the question holds a sensitive word, else None."""
        found = self.find_sensitive(question)
        if found:
            logger.info("question refused: %d sensitive word(s)", len(found))
            return self.config.refusal_text.get(lang, self.config.refusal_text["en"])
        return None

    def clean_answer(self, answer: str) -> str:
        """Mask sensitive words and (if enabled) redact PII in an answer."""
        if self._pattern is not None:
            answer = self._pattern.sub(self.config.mask, answer)
        if self.config.redact_answers:
            answer = redact(answer)
        return answer


class RedactingFilter(logging.Filter):
    """A logging filter that redacts PII from each record's message (args are merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


class AuditLog:
    """Append one JSON object per answered question to a JSONL file.

    Each record is written with a single ``write`` on an ``O_APPEND`` descriptor under a thread lock
    and an ``flock``, then fsynced, so concurrent writers (threads or processes) never interleave lines.
    """

    def __init__(self, path: str | os.PathLike[str], *, redact_pii: bool = True) -> None:
        self.path = Path(path)
        self.redact_pii = redact_pii
        self._lock = threading.Lock()

    def _clean(self, value: Any) -> Any:
        if not self.redact_pii:
            return value
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(v) for v in value]
        return value

    def write(
        self,
        question: str,
        answer: str,
        *,
        sources: Sequence[dict[str, Any]] | Iterable[Any] = (),
        timings: dict[str, float] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append a record and return it (as written)."""
        srcs = [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in sources]
        for s in srcs:  # keep the log small: where, not the whole passage
            s.pop("text", None)
        record = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "question": question,
            "answer": answer,
            "sources": srcs,
            "timings": dict(timings or {}),
            **extra,
        }
        record = self._clean(record)
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return record

    def read(self) -> list[dict[str, Any]]:
        """All records (skipping a torn last line, if any)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("skipping a malformed audit line in %s", self.path)
        return out
