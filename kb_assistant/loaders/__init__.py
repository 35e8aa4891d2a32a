"""File loaders: turn files into :class:`~kb_assistant.types.Document` records.

    load_file(path, max_bytes=..., pdf_engine="auto", limits=None) -> list[Document]  # raises LoaderError
    parser_version(file_type, pdf_engine=...) -> str   # stored per document; changes force a re-parse
    walk(paths, include=None, exclude=None, max_bytes=...) -> Iterator[WalkEntry]
    supported_suffixes() -> set[str]
    detect_lang(text) -> "zh" | "en"

Heavy parsers (pypdfium2, pypdf, python-docx, python-pptx, openpyxl, bs4, the OCR engine) are imported
only when a file of that type is loaded.
"""

from __future__ import annotations

from kb_assistant.loaders.base import DEFAULT_MAX_BYTES, normalize_text
from kb_assistant.loaders.load import load_file
from kb_assistant.loaders.registry import detect_format, parser_version, supported_suffixes
from kb_assistant.loaders.walker import WalkEntry, walk
from kb_assistant.text import detect_lang

__all__ = [
    "DEFAULT_MAX_BYTES",
    "WalkEntry",
    "detect_format",
    "detect_lang",
    "load_file",
    "normalize_text",
    "parser_version",
    "supported_suffixes",
    "walk",
]
