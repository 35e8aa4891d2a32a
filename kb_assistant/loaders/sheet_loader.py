"""XLSX (openpyxl, read-only) and CSV loaders: rows as ``"Header: value; ..."`` text, blocks of rows."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import check_zip, finish, format_cell, make_document, one_line, render_row
from kb_assistant.loaders.encoding import decode_bytes
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

ROWS_PER_DOCUMENT = 50


def load_xlsx(path: Path) -> list[Document]:
    check_zip(path, "XLSX", "xl/workbook.xml")
    from openpyxl import load_workbook

    try:
        wb = load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid XLSX ({one_line(exc)})") from None
    docs: list[Document] = []
    try:
        for ws in wb.worksheets:
            try:
                rows = ws.iter_rows(values_only=True)
                docs.extend(_table_documents(rows, "xlsx", section=ws.title))
            except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
                logger.warning("%s: sheet %r unreadable: %s", path.name, ws.title, one_line(exc))
    finally:
        wb.close()
    return finish(docs, "XLSX has no cell values")


def load_csv(path: Path) -> list[Document]:
    text, encoding = decode_bytes(path.read_bytes(), path.suffix.lower() or ".csv")
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:
        raise CorruptFile(f"not a valid CSV ({one_line(exc)})") from None
    docs = _table_documents(rows, "csv", section=path.stem, encoding=encoding)
    return finish(docs, "CSV has no values")


def _table_documents(rows: Iterable[Iterable[Any]], file_type: str, **meta: Any) -> list[Document]:
    """Use the first non-empty row as header; emit one Document per ``ROWS_PER_DOCUMENT`` rows."""
    header: list[str] | None = None
    block: list[str] = []
    first_row = last_row = 0
    docs: list[Document] = []
    for number, raw in enumerate(rows, start=1):
        row = list(raw)
        if not any(format_cell(v) for v in row):
            continue
        if header is None:
            header = [format_cell(v) for v in row]
            continue
        if not block:
            first_row = number
        block.append(render_row(header, row))
        last_row = number
        if len(block) >= ROWS_PER_DOCUMENT:
            docs.append(_block_doc(block, file_type, first_row, number, meta))
            block = []
    if block:
        docs.append(_block_doc(block, file_type, first_row, last_row, meta))
    elif header is not None and not docs:  # a header-only table is still text
        docs.append(make_document(" | ".join(h for h in header if h), file_type, **meta))
    return docs


def _block_doc(lines: list[str], file_type: str, first: int, last: int, meta: dict[str, Any]) -> Document:
    return make_document("\n".join(lines), file_type, rows=f"{first}-{last}", **meta)
