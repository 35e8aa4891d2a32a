"""E-mail (.eml) loader: subject as title, a From/To/Date header block, body text, attachment names."""

from __future__ import annotations

import email
import logging
from email import policy
from email.message import EmailMessage
from pathlib import Path

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import finish, make_document, one_line
from kb_assistant.loaders.cleanup import normalize_cjk
from kb_assistant.loaders.html_loader import html_to_text
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

_HEADERS = ("From", "To", "Cc", "Date")


def load_eml(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    data = path.read_bytes()
    try:
        msg = email.message_from_bytes(data, policy=policy.default)
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid e-mail ({one_line(exc)})") from None
    if not isinstance(msg, EmailMessage) or not any(msg.get(h) for h in ("From", "Subject", "Date", "To")):
        raise CorruptFile("not a valid e-mail (no From/To/Subject/Date headers)")
    subject = _header(msg, "Subject")
    lines = [f"Subject: {subject}"] if subject else []
    lines += [f"{h}: {_header(msg, h)}" for h in _HEADERS if _header(msg, h)]
    body = normalize_cjk(_body(msg))  # hard-wrapped Chinese mail: lines rejoined
    attachments = _attachment_names(msg)
    parts = ["\n".join(lines), body]
    if attachments:
        parts.append("Attachments: " + ", ".join(attachments))
    doc = make_document("\n\n".join(p for p in parts if p), "eml", title=subject)
    if attachments:
        doc.metadata["attachments"] = attachments
    return finish([doc], "e-mail has no text")


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - malformed header values raise on access with policy.default
        value = msg.get_all(name, [""])[0] if msg.get_all(name) else ""
    return " ".join(str(value or "").split())


def _body(msg: EmailMessage) -> str:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        part = None
    if part is None:
        return ""
    try:
        content = part.get_content()
    except Exception as exc:  # noqa: BLE001 - unknown charset, broken transfer encoding
        logger.warning("e-mail body unreadable: %s", one_line(exc))
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return html_to_text(content)
    return content


def _attachment_names(msg: EmailMessage) -> list[str]:
    names: list[str] = []
    try:
        for part in msg.iter_attachments():
            name = part.get_filename()
            if name:
                names.append(str(name))
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        logger.debug("attachments unreadable: %s", one_line(exc))
    return names
