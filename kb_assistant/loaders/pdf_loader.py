"""PDF loader (pypdf): one Document per page with ``page``, ``title`` and the outline ``heading``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile, EmptyFile, EncryptedFile
from kb_assistant.loaders.base import make_document, one_line
from kb_assistant.types import Document

logger = logging.getLogger(__name__)


def load_pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    pypdf_logger = logging.getLogger("pypdf")
    if pypdf_logger.level == logging.NOTSET:  # pypdf logs errors for every odd file it recovers from;
        pypdf_logger.setLevel(logging.CRITICAL)  # we report failures ourselves (unless the user set a level)
    try:
        reader = PdfReader(str(path), strict=False)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise CorruptFile(f"not a valid PDF ({one_line(exc)})") from None
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except (DependencyError, NotImplementedError) as exc:
            raise EncryptedFile(f"encrypted PDF: unsupported encryption ({one_line(exc)})") from None
        except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
            ok = 0
        if not ok:
            raise EncryptedFile("encrypted PDF: needs a password (not supported)")
    try:
        pages = list(reader.pages)
    except FileNotDecryptedError:
        raise EncryptedFile("encrypted PDF: needs a password (not supported)") from None
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid PDF ({one_line(exc)})") from None
    if not pages:
        raise EmptyFile("PDF has no pages")
    title = _title(reader)
    headings = _outline_headings(reader)
    docs: list[Document] = []
    failures = 0
    current_heading: str | None = None
    for number, page in enumerate(pages, start=1):
        current_heading = headings.get(number, current_heading)
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
            failures += 1
            logger.warning("%s: page %d unreadable: %s", path.name, number, one_line(exc))
            continue
        doc = make_document(text, "pdf", page=number, title=title, heading=current_heading)
        if doc.text:
            docs.append(doc)
    if not docs:
        if failures == len(pages):
            raise CorruptFile("not a valid PDF (no page could be read)")
        raise EmptyFile("no text layer; OCR not available")
    return docs


def _title(reader: Any) -> str | None:
    try:
        meta = reader.metadata
        title = meta.title if meta else None
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        return None
    return " ".join(str(title).split()) or None if title else None


def _outline_headings(reader: Any) -> dict[int, str]:
    """Map 1-based page numbers to the first outline entry that points at them."""
    result: dict[int, str] = {}

    def visit(items: Any, depth: int) -> None:
        if depth > 20:
            return
        for item in items:
            if isinstance(item, list):
                visit(item, depth + 1)
                continue
            try:
                number = reader.get_destination_page_number(item) + 1
                title = " ".join(str(item.title).split())
            except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
                logger.debug("outline entry skipped: %s", one_line(exc))
                continue
            if number > 0 and title and number not in result:
                result[number] = title

    try:
        visit(reader.outline, 0)
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        logger.debug("outline unreadable: %s", one_line(exc))
    return result
