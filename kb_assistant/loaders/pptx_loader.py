"""PPTX loader (python-pptx): one Document per slide with ``page``, ``title`` and speaker notes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import check_zip, finish, make_document, one_line, render_row
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)


def load_pptx(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    check_zip(path, "PPTX", "ppt/presentation.xml", limits)
    from pptx import Presentation

    try:
        prs = Presentation(str(path))
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid PPTX ({one_line(exc)})") from None
    docs: list[Document] = []
    limits.check_pages(len(prs.slides), "PPTX slides")
    for number, slide in enumerate(prs.slides, start=1):
        try:
            docs.append(_slide_document(slide, number))
        except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
            logger.warning("%s: slide %d unreadable: %s", path.name, number, one_line(exc))
    return finish(docs, "PPTX has no text")


def _slide_document(slide: Any, number: int) -> Document:
    title = None
    title_shape = slide.shapes.title
    if title_shape is not None and title_shape.has_text_frame:
        title = " ".join(title_shape.text_frame.text.split()) or None
    lines: list[str] = []
    for shape in slide.shapes:
        lines.extend(_shape_lines(shape, 0))
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            lines.append("Notes: " + notes.text.strip())
    return make_document("\n".join(lines), "pptx", page=number, title=title, section=title)


def _shape_lines(shape: Any, depth: int) -> list[str]:
    if depth > 10:
        return []
    if getattr(shape, "shapes", None) is not None and shape.shape_type == 6:  # group shape
        out: list[str] = []
        for child in shape.shapes:
            out.extend(_shape_lines(child, depth + 1))
        return out
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[" ".join(c.text.split()) for c in row.cells] for row in shape.table.rows]
        rows = [r for r in rows if any(r)]
        if not rows:
            return []
        return [render_row(rows[0], r) for r in rows[1:]] or [" | ".join(rows[0])]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [p.text for p in _paragraphs(shape.text_frame)]
    return []


def _paragraphs(frame: Any) -> list[Any]:
    return [p for p in frame.paragraphs if p.text.strip()]
