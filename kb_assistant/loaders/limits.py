"""The resource limits every input is parsed under (``[ingest]`` settings), and their one-line reasons.

Two kinds of limit work together:

* structural caps, checked by the loaders before the expensive work (pages, slides and sheets; the
  unzipped size of an Office file and of one of its XML parts; HTML nesting; the text of a file and the
  chunks it makes): cheap, and their reason names the cap;
* a time and a memory budget per file, enforced by parsing in a child process
  (:mod:`kb_assistant.loaders.sandbox`): a parser stuck in C code (lxml, PDFium) or allocating without
  bound is killed, which no check inside the parser can do.

Every reason says which ``[ingest]`` setting was hit, so a user with genuinely large files can raise it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from kb_assistant.errors import FileTooLarge

#: deeper HTML is refused: libxml2 (behind lxml and BeautifulSoup) stops building the tree there, and
#: no real page nests a tenth as deep
MAX_HTML_DEPTH = 256


def raise_hint(setting: str) -> str:
    """The tail of every limit reason: which setting, and where to raise it."""
    return f"([ingest] {setting}; raise it in config.toml)"


@dataclass(frozen=True)
class ParseLimits:
    """Limits of one file's parse; the defaults are those of :class:`kb_assistant.config.IngestConfig`."""

    #: seconds of wall time for one file (None: no limit); enforced only with ``isolate``
    timeout_s: float | None = 300.0
    #: MB of memory (data segment) of the parser process (None: no limit); enforced only with ``isolate``
    memory_mb: float | None = 2048.0
    #: parse in a child process (time and memory enforced, a parser crash cannot take the caller down)
    isolate: bool = False
    #: PDF pages, PPTX slides, XLSX sheets
    max_pages: int = 10_000
    #: total unzipped size of an Office file (zip bombs)
    max_unzipped_mb: float = 100.0
    #: one XML part of a DOCX or PPTX (parsed whole into memory; XLSX sheets are streamed)
    max_xml_mb: float = 32.0
    #: characters of text extracted from one file
    max_text_chars: int = 64_000_000
    #: chunks made from one file
    max_chunks: int = 100_000

    @classmethod
    def from_config(cls, config: Any) -> ParseLimits:
        """From an ``[ingest]`` section (:class:`~kb_assistant.config.IngestConfig`)."""
        return cls(timeout_s=config.parse_timeout_s or None, memory_mb=config.parse_memory_mb or None,
                   isolate=config.parse_in_subprocess, max_pages=config.max_pages,
                   max_unzipped_mb=config.max_unzipped_mb, max_xml_mb=config.max_xml_mb,
                   max_text_chars=config.max_text_chars, max_chunks=config.max_chunks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParseLimits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def check_pages(self, n_pages: int, what: str) -> None:
        """``what``: "PDF pages", "PPTX slides", "XLSX sheets"."""
        if n_pages > self.max_pages:
            raise FileTooLarge(f"the file has {n_pages:,} {what}, more than {self.max_pages:,} "
                               f"{raise_hint('max_pages')}")

    def check_text(self, n_chars: int) -> None:
        if n_chars > self.max_text_chars:
            raise FileTooLarge(f"the file holds more than {self.max_text_chars:,} characters of text "
                               f"{raise_hint('max_text_chars')}")

    def check_chunks(self, n_chunks: int) -> None:
        if n_chunks > self.max_chunks:
            raise FileTooLarge(f"the file makes {n_chunks:,} chunks, more than {self.max_chunks:,} "
                               f"{raise_hint('max_chunks')}")


DEFAULT_LIMITS = ParseLimits()


def mb(value: float) -> str:
    """``100`` -> ``"100 MB"``, ``0.5`` -> ``"0.5 MB"``."""
    return f"{value:g} MB"
