"""XLSX (openpyxl, read-only) and CSV loaders: rows as ``"Header: value; ..."`` text, blocks of rows.

XLSX sheets are streamed row by row from their XML, keeping only the cells that exist: the sheet's
``<dimension>`` is not trusted (``A1:XFD1048576`` used to pad every row to 16,384 columns, a stale
``A1:A1`` to cut the sheet to its first cell).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import check_zip, finish, format_cell, make_document, one_line, render_cells
from kb_assistant.loaders.encoding import decode_bytes
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

ROWS_PER_DOCUMENT = 50

#: a row as the cells that exist: (0-based column, value)
Row = list[tuple[int, Any]]


def load_xlsx(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    check_zip(path, "XLSX", "xl/workbook.xml", limits, streamed="xl/worksheets/")
    from openpyxl import load_workbook

    try:
        wb = load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid XLSX ({one_line(exc)})") from None
    docs: list[Document] = []
    try:
        limits.check_pages(len(wb.worksheets), "XLSX sheets")
        for ws in wb.worksheets:
            try:
                docs.extend(_table_documents(sheet_rows(ws), "xlsx", section=ws.title))
            except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
                logger.warning("%s: sheet %r unreadable: %s", path.name, ws.title, one_line(exc))
    finally:
        wb.close()
    return finish(docs, "XLSX has no cell values")


def sheet_rows(ws: Any) -> Iterator[tuple[int, Row]]:
    """(row number, cells) of the rows present in a read-only sheet's XML, whatever its ``<dimension>``."""
    try:
        from openpyxl.worksheet._reader import WorkSheetParser

        wb = ws.parent
        source = ws._get_source()
        parser = WorkSheetParser(source, ws._shared_strings, data_only=wb.data_only, epoch=wb.epoch,
                                 date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
    except (ImportError, AttributeError, TypeError):  # another openpyxl: its own reader, unsized
        ws.reset_dimensions()
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            yield number, [(i, v) for i, v in enumerate(values) if v is not None]
        return
    with source:
        for number, cells in parser.parse():
            yield number, [(int(c["column"]) - 1, c["value"]) for c in cells if c.get("value") is not None]


def load_csv(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
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
    docs = _table_documents(((n, list(enumerate(r))) for n, r in enumerate(rows, start=1)), "csv",
                            section=path.stem, encoding=encoding)
    return finish(docs, "CSV has no values")


def _table_documents(rows: Iterable[tuple[int, Row]], file_type: str, **meta: Any) -> list[Document]:
    """Use the first non-empty row as header; emit one Document per ``ROWS_PER_DOCUMENT`` rows."""
    header: dict[int, str] | None = None
    block: list[str] = []
    first_row = last_row = 0
    docs: list[Document] = []
    for number, cells in rows:
        if not any(format_cell(v) for _, v in cells):
            continue
        if header is None:
            header = {i: format_cell(v) for i, v in cells}
            continue
        if not block:
            first_row = number
        block.append(render_cells(header, cells))
        last_row = number
        if len(block) >= ROWS_PER_DOCUMENT:
            docs.append(_block_doc(block, file_type, first_row, number, meta))
            block = []
    if block:
        docs.append(_block_doc(block, file_type, first_row, last_row, meta))
    elif header is not None and not docs:  # a header-only table is still text
        docs.append(make_document(" | ".join(h for _, h in sorted(header.items()) if h), file_type, **meta))
    return docs


def _block_doc(lines: list[str], file_type: str, first: int, last: int, meta: dict[str, Any]) -> Document:
    return make_document("\n".join(lines), file_type, rows=f"{first}-{last}", **meta)
