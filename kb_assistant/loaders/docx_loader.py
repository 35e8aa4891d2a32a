"""DOCX loader (python-docx): paragraphs and tables in order, one Document per heading section."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import check_zip, finish, make_document, one_line, render_row
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

_HEADING_STYLES = ("heading 1", "heading 2", "heading 3", "title")


def load_docx(path: Path) -> list[Document]:
    check_zip(path, "DOCX", "word/document.xml")
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid DOCX ({one_line(exc)})") from None
    title = None
    try:
        title = (document.core_properties.title or "").strip() or None
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        logger.debug("core properties unreadable: %s", one_line(exc))

    # each section: [heading, lines, has_body]; a heading with no body yet is folded into the next one
    sections: list[list[Any]] = [[None, [], False]]
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        current = sections[-1]
        if tag == "p":
            para = Paragraph(element, document)
            text = para.text.strip()
            if not text:
                continue
            if _style_name(para) == "title":
                title = title or text
                current[1].append(text)
            elif _is_heading(para):
                if current[2] or not current[1]:
                    sections.append([text, [text], False])
                else:
                    current[0] = text
                    current[1].append(text)
            else:
                current[1].append(text)
                current[2] = True
        elif tag == "tbl":
            current[1].append(_table_text(Table(element, document)))
            current[2] = True
    docs = [
        make_document("\n\n".join(lines), "docx", title=title, heading=heading)
        for heading, lines, _ in sections
    ]
    return finish(docs, "DOCX has no text")


def _style_name(para: Any) -> str:
    try:
        return (para.style.name or "").lower() if para.style is not None else ""
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        return ""


def _is_heading(para: Any) -> bool:
    name = _style_name(para)
    if name in _HEADING_STYLES:
        return True
    try:  # documents that use outline levels instead of the built-in heading styles
        lvl = para._p.pPr.outlineLvl if para._p.pPr is not None else None
        return lvl is not None and int(lvl.val) <= 2
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        return False


def _table_text(table: Any) -> str:
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # merged cells repeat the same element
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(cells)
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body:
        return " | ".join(header)
    return "\n".join(render_row(header, r) for r in body)
