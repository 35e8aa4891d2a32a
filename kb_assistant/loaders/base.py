"""Shared helpers for all loaders: text normalisation, size checks, messages (language detection is
``kb_assistant.text.detect_lang``, re-exported here for the loaders)."""

from __future__ import annotations

import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile, EmptyFile, FileTooLarge
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits, mb, raise_hint
from kb_assistant.text import detect_lang
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 2**20
#: Office files (zip containers) with more members than this are refused (real ones have hundreds)
MAX_ZIP_MEMBERS = 50_000

_CTRL_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000\u202f\u205f\ufeff]+")
_BLANKS_RE = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC-normalise, strip NULs/control chars, tidy spaces per line, collapse runs of blank lines.

    Line breaks between paragraphs are kept (at most one blank line in a row). Full-width and
    compatibility characters are left as they are (NFC, not NFKC), so CJK punctuation survives.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").replace("\v", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _CTRL_RE.sub("", text)
    lines = [_SPACES_RE.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = _BLANKS_RE.sub("\n\n", text)
    return text.strip()


def one_line(exc: BaseException | str, limit: int = 160) -> str:
    """First line of an exception message, shortened: loaders' errors must stay one line."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def format_mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def size_limit_message(size: int, max_bytes: int) -> str:
    """The one-line reason used by both :func:`load_file` and the walker."""
    limit = f"{max_bytes / 2**20:g} MB" if max_bytes >= 2**20 else f"{max_bytes} bytes"
    return f"file larger than the {limit} limit ({format_mb(size)})"


def check_size(path: Path, max_bytes: int) -> int:
    """Stat ``path`` and raise :class:`FileTooLarge` / :class:`EmptyFile`; returns the size."""
    size = path.stat().st_size
    if size > max_bytes:
        raise FileTooLarge(size_limit_message(size, max_bytes))
    if size == 0:
        raise EmptyFile("empty file (0 bytes)")
    return size


def check_zip(path: Path, kind: str, required: str, limits: ParseLimits = DEFAULT_LIMITS, *,
              streamed: str | None = None) -> None:
    """Validate an OOXML container before a library opens it: a zip, has ``required``, not a bomb.

    Refused: members adding up to more than ``limits.max_unzipped_mb``, more than
    :data:`MAX_ZIP_MEMBERS` members, and an XML part larger than ``limits.max_xml_mb`` (parts under the
    ``streamed`` prefix, read row by row, are exempt).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        raise CorruptFile(f"not a valid {kind} (not a zip archive)") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise CorruptFile(f"not a valid {kind} ({one_line(exc)})") from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CorruptFile(f"{kind} has more than {MAX_ZIP_MEMBERS:,} parts (zip bomb?)")
    total = sum(i.file_size for i in infos)
    if total > limits.max_unzipped_mb * 2**20:
        raise CorruptFile(f"{kind} expands to more than {mb(limits.max_unzipped_mb)} (zip bomb?) "
                          f"{raise_hint('max_unzipped_mb')}")
    for info in infos:
        name = info.filename
        if (name.endswith((".xml", ".rels")) and info.file_size > limits.max_xml_mb * 2**20
                and not (streamed and name.startswith(streamed))):
            raise FileTooLarge(f"{kind} part {name[:60]} is {format_mb(info.file_size)} of XML, more than "
                               f"{mb(limits.max_xml_mb)} {raise_hint('max_xml_mb')}")
    names = {i.filename for i in infos}
    if required not in names:
        raise CorruptFile(f"not a valid {kind} (zip archive without {required})")


def make_document(text: str, file_type: str, **metadata: Any) -> Document:
    """Build a :class:`Document` with normalised text plus ``file_type`` and ``lang`` metadata.

    ``None`` metadata values are dropped so downstream code can use ``"key" in metadata``.
    """
    text = normalize_text(text)
    meta: dict[str, Any] = {k: v for k, v in metadata.items() if v is not None and v != ""}
    meta["file_type"] = file_type
    meta["lang"] = detect_lang(text)
    return Document(text=text, metadata=meta)


def finish(docs: list[Document], what: str = "no extractable text") -> list[Document]:
    """Drop empty documents; raise :class:`EmptyFile` if nothing is left."""
    kept = [d for d in docs if d.text.strip()]
    if not kept:
        raise EmptyFile(what)
    return kept


def render_row(header: list[str], row: list[Any]) -> str:
    """Render a table row as ``"Name: Alice; Dept: HR"`` (falls back to ``a | b`` without header)."""
    return render_cells(dict(enumerate(header)), enumerate(row))


def render_cells(header: dict[int, str], cells: Iterable[tuple[int, Any]]) -> str:
    """:func:`render_row` of a sparse row: ``(column, value)`` pairs, header names by column."""
    parts = []
    for i, value in cells:
        cell = format_cell(value)
        if not cell:
            continue
        key = header.get(i, "")
        parts.append(f"{key}: {cell}" if key else cell)
    return "; ".join(parts)


def format_cell(value: Any) -> str:
    """Readable text for a spreadsheet cell value (dates as ISO, 4.0 as 4)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text[:-9] if text.endswith("T00:00:00") else text.replace("T", " ")
    return " ".join(str(value).split())
