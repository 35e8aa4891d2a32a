"""Pick a loader by file suffix and by content sniffing (magic bytes), and run it with error mapping."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

from kb_assistant.errors import CorruptFile, EmptyFile, LoaderError, UnsupportedFormat
from kb_assistant.loaders.base import DEFAULT_MAX_BYTES, check_size, one_line
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

LoaderFn = Callable[..., list[Document]]

#: suffix -> format name
SUFFIXES: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx", ".docm": "docx",
    ".pptx": "pptx", ".pptm": "pptx",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".csv": "csv", ".tsv": "csv",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".md": "md", ".markdown": "md",
    ".txt": "txt", ".text": "txt", ".log": "txt", ".rst": "txt",
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".eml": "eml",
}
_LEGACY = {".doc": ".docx", ".xls": ".xlsx", ".ppt": ".pptx"}


def _loaders() -> dict[str, LoaderFn]:
    from kb_assistant.loaders import (
        docx_loader,
        email_loader,
        html_loader,
        json_loader,
        pdf_loader,
        pptx_loader,
        sheet_loader,
        text_loader,
    )

    return {
        "pdf": pdf_loader.load_pdf,
        "docx": docx_loader.load_docx,
        "pptx": pptx_loader.load_pptx,
        "xlsx": sheet_loader.load_xlsx,
        "csv": sheet_loader.load_csv,
        "html": html_loader.load_html,
        "md": text_loader.load_markdown,
        "txt": text_loader.load_txt,
        "json": json_loader.load_json,
        "jsonl": json_loader.load_jsonl,
        "eml": email_loader.load_eml,
    }


#: bump a format's number when its loader's output changes for the same file: an ingest then re-parses
#: files that an older loader produced instead of skipping them as unchanged
LOADER_VERSIONS: dict[str, int] = {"pdf": 2, "docx": 2, "txt": 2, "md": 2, "eml": 2}


def parser_version(file_type: str | None, *, pdf_engine: str = "auto") -> str:
    """Identity of the parser that turns a file of this type into text, e.g. ``"pdf/2/auto"``.

    Stored per document in the docstore; a different value on re-ingest means "parse again".
    """
    version = f"{file_type}/{LOADER_VERSIONS.get(file_type or '', 1)}"
    return f"{version}/{pdf_engine}" if file_type == "pdf" else version


def supported_suffixes() -> set[str]:
    """File suffixes (lower case, with the dot) that :func:`load_file` understands."""
    return set(SUFFIXES)


def sniff(path: Path, head: bytes) -> str | None:
    """Format from the first bytes of the file, or None when the content does not say."""
    if head.lstrip()[:5] == b"%PDF-" or (path.suffix.lower() == ".pdf" and b"%PDF-" in head[:1024]):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if "[Content_Types].xml" not in names:
            return None
        for marker, fmt in (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"),
                            ("xl/workbook.xml", "xlsx")):
            if marker in names:
                return fmt
        return None
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    return None


def detect_format(path: Path, head: bytes) -> str:
    """Resolve the format: strong magic bytes win over the suffix (a PDF named .docx loads as PDF)."""
    suffix = path.suffix.lower()
    by_suffix = SUFFIXES.get(suffix)
    by_content = sniff(path, head)
    if by_content == "ole":
        target = _LEGACY.get(suffix, ".docx/.xlsx/.pptx")
        raise UnsupportedFormat(f"legacy Office format ({suffix or 'OLE'}); save it as {target}")
    if by_content and by_content != by_suffix:
        if by_suffix is not None:
            logger.warning("%s: content is %s, not %s; loading it as %s", path.name, by_content,
                           suffix, by_content)
        return by_content
    if by_suffix:
        return by_suffix
    if suffix in _LEGACY:
        raise UnsupportedFormat(f"legacy Office format ({suffix}); save it as {_LEGACY[suffix]}")
    supported = ", ".join(sorted(SUFFIXES))
    raise UnsupportedFormat(f"unsupported file type '{suffix or path.name}' (supported: {supported})")


def load_inline(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, pdf_engine: str = "auto",
                limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    """:func:`load_file` in this process (the body of the parser process, too): structural caps only."""
    path = Path(path)
    try:
        if path.is_dir():
            raise UnsupportedFormat("is a directory, not a file (use walk() for folders)")
        check_size(path, max_bytes)
        with path.open("rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        raise LoaderError("file not found") from None
    except PermissionError:
        raise LoaderError("permission denied: cannot read the file") from None
    except IsADirectoryError:
        raise UnsupportedFormat("is a directory, not a file") from None
    except OSError as exc:
        raise LoaderError(f"cannot read the file ({one_line(exc)})") from None
    fmt = detect_format(path, head)
    loader = _loaders()[fmt]
    options = {"engine": pdf_engine} if fmt == "pdf" else {}
    try:
        docs = loader(path, limits=limits, **options)
    except LoaderError:
        raise
    except MemoryError:
        if limits.isolate:  # the parser process reports its memory budget
            raise
        raise CorruptFile(f"{fmt.upper()} needs too much memory to parse") from None
    except RecursionError:
        raise CorruptFile(f"not a valid {fmt.upper()} (nested too deeply)") from None
    except PermissionError:
        raise LoaderError("permission denied: cannot read the file") from None
    except Exception as exc:  # last resort: never let a parser bug escape untyped
        logger.debug("loader %s failed on %s", fmt, path, exc_info=True)
        raise CorruptFile(f"not a valid {fmt.upper()} ({type(exc).__name__}: {one_line(exc)})") from None
    if not docs:
        raise EmptyFile("no extractable text")
    limits.check_text(sum(len(d.text) for d in docs))
    return docs
