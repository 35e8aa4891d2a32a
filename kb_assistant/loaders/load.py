"""The one entry point of the loaders: :func:`load_file` parses in this process or in the parser process.

It sits above both :mod:`~kb_assistant.loaders.registry` (the in-process parse) and
:mod:`~kb_assistant.loaders.sandbox` (the parser process, which runs the registry's parse).
"""

from __future__ import annotations

from pathlib import Path

from kb_assistant.loaders.base import DEFAULT_MAX_BYTES
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.loaders.registry import load_inline
from kb_assistant.types import Document


def load_file(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, pdf_engine: str = "auto",
              limits: ParseLimits | None = None) -> list[Document]:
    """Load one file into Documents; raises a :class:`LoaderError` subclass with a one-line reason.

    ``pdf_engine``: "auto" (PDFium, pypdf where PDFium fails), "pdfium" or "pypdf" (``[ingest] pdf_engine``).
    ``limits``: the caps and budgets of the parse (:class:`~kb_assistant.loaders.limits.ParseLimits`, from
    ``[ingest]``); with ``limits.isolate`` the file is parsed in a child process that is killed past the
    time budget and runs under the memory budget. Without ``limits``: the default caps, in this process.
    """
    limits = limits or DEFAULT_LIMITS
    if limits.isolate:
        from kb_assistant.loaders.sandbox import parse_isolated

        return parse_isolated(path, max_bytes=max_bytes, pdf_engine=pdf_engine, limits=limits)
    return load_inline(path, max_bytes=max_bytes, pdf_engine=pdf_engine, limits=limits)
