"""DOCX loader (python-docx): paragraphs and tables in order, one Document per heading section."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import check_zip, finish, make_document, one_line, render_row
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

_HEADING_STYLES = ("heading 1", "heading 2", "heading 3", "title")


def load_docx(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    check_zip(path, "DOCX", "word/document.xml", limits)
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
    styles = _StyleNames()
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        current = sections[-1]
        if tag == "p":
            para = Paragraph(element, document)
            text = para.text.strip()
            if not text:
                continue
            style = styles.name(para)
            if style == "title":
                title = title or text
                current[1].append(text)
            elif _is_heading(para, style):
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


class _StyleNames:
    """Paragraph style names by style id, looked up once per id: python-docx searches the styles part
    with XPath on every ``paragraph.style`` (85% of the time on a document of many short paragraphs)."""

    def __init__(self) -> None:
        self.names: dict[str | None, str] = {}

    def name(self, para: Any) -> str:
        try:
            style_id = para._p.style
        except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
            return _style_name(para)
        if style_id not in self.names:
            self.names[style_id] = _style_name(para)
        return self.names[style_id]


def _style_name(para: Any) -> str:
    try:
        return (para.style.name or "").lower() if para.style is not None else ""
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        return ""


def _is_heading(para: Any, name: str) -> bool:
    if name in _HEADING_STYLES:
        return True
    try:  # documents that use outline levels instead of the built-in heading styles
        lvl = para._p.pPr.outlineLvl if para._p.pPr is not None else None
        return lvl is not None and int(lvl.val) <= 2
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        return False


def _table_text(table: Any, depth: int = 0) -> str:
    """One line per row, ``"Header: value; ..."`` like a sheet, aligned on the table's grid columns.

    A header cell merged across columns names each of them; a body cell merged across columns counts
    once; a row that is one merged cell (a label across the table) stays plain text; a cell merged
    down repeats its value in each row (each row stands alone); nested tables are read inline.
    """
    rows: list[list[tuple[Any, str]]] = []
    for row in table.rows:
        cells = [(cell._tc, _cell_text(cell, depth)) for cell in row.cells]
        if any(text for _, text in cells):
            rows.append(cells)
    if not rows:
        return ""
    header = [text for _, text in rows[0]]
    if len(rows) == 1:
        return " | ".join(_dedupe(rows[0]))
    lines = []
    for cells in rows[1:]:
        values = _dedupe(cells)
        if len(values) == 1 and len(cells) > 1:  # one cell across the whole row
            lines.append(values[0])
            continue
        keep = [i for i, (tc, _) in enumerate(cells) if i == 0 or tc is not cells[i - 1][0]]
        lines.append(render_row([header[i] for i in keep], [cells[i][1] for i in keep]))
    return "\n".join(lines)


def _dedupe(cells: list[tuple[Any, str]]) -> list[str]:
    """The texts of a row's distinct cells (python-docx repeats a merged cell for each grid column)."""
    return [text for i, (tc, text) in enumerate(cells) if (i == 0 or tc is not cells[i - 1][0]) and text]


def _cell_text(cell: Any, depth: int) -> str:
    parts = [" ".join(cell.text.split())]
    if depth < 3:
        parts += [_table_text(inner, depth + 1).replace("\n", "; ") for inner in cell.tables]
    return " ".join(p for p in parts if p)
