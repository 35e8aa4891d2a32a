"""Shared helpers for all loaders: text normalisation, language detection, size checks, messages."""

from __future__ import annotations

import logging
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile, EmptyFile, FileTooLarge
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 2**20
#: Office files (zip containers) whose members add up to more than this are refused as zip bombs.
MAX_UNZIPPED_BYTES = 100 * 2**20

#: Han ideographs and Japanese kana: scripts written without spaces between words
CJK_NO_SPACE = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
#: Hangul syllables (Korean puts spaces between words)
HANGUL = "\uac00-\ud7af"
_CJK_RE = re.compile(f"[{CJK_NO_SPACE}{HANGUL}]")
_CTRL_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000\u202f\u205f\ufeff]+")
_BLANKS_RE = re.compile(r"\n{3,}")


def detect_lang(text: str) -> str:
    """Return ``"zh"`` if CJK characters are more than 20% of the letters in ``text``, else ``"en"``."""
    letters = sum(map(str.isalpha, text))
    if letters == 0:
        return "en"
    return "zh" if len(_CJK_RE.findall(text)) / letters > 0.2 else "en"


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


def check_zip(path: Path, kind: str, required: str, max_unzipped: int = MAX_UNZIPPED_BYTES) -> None:
    """Validate an OOXML container before a library opens it: a zip, has ``required``, not a bomb."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        raise CorruptFile(f"not a valid {kind} (not a zip archive)") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise CorruptFile(f"not a valid {kind} ({one_line(exc)})") from None
    total = sum(i.file_size for i in infos)
    if total > max_unzipped:
        raise CorruptFile(f"{kind} expands to more than {max_unzipped // 2**20} MB (zip bomb?)")
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
    parts = []
    for i, value in enumerate(row):
        cell = format_cell(value)
        if not cell:
            continue
        key = header[i] if i < len(header) and header[i] else ""
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
