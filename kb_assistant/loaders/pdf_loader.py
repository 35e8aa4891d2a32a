"""PDF loader: one Document per page with ``page``, ``title`` and the outline ``heading``.

Text engines (``[ingest] pdf_engine``): ``pdfium`` (pypdfium2; spaces and line structure as laid out,
7-12x the pages/s of pypdf in docs/benchmarks.md), ``pypdf``, or ``auto`` (PDFium, and pypdf for a file
or page PDFium cannot read). pypdf also does what it is good at whatever the engine: encryption detection
and empty-password decryption, the metadata title, and the outline headings of a file PDFium cannot open
(PDFium reads the same outline 10-20x faster, so it does when it has the file open). The page texts of a
document go through the shared clean-up: page furniture (:mod:`.furniture`) and CJK spacing
(:mod:`.cleanup`). Pages without a text layer are read by OCR when the ``ocr`` extra is installed
(:mod:`.ocr`).
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from kb_assistant.errors import ConfigError, CorruptFile, EmptyFile, EncryptedFile
from kb_assistant.loaders import ocr
from kb_assistant.loaders.base import make_document, normalize_text, one_line
from kb_assistant.loaders.cleanup import full_line_width, normalize_cjk
from kb_assistant.loaders.furniture import strip_furniture
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

PDF_ENGINES = ("auto", "pdfium", "pypdf")
#: PDFium is not thread-safe: every call into it in this process goes through this lock
PDFIUM_LOCK = threading.Lock()
#: PDFium joins a word hyphenated at a line break and marks the hyphen with \x02 (\ufffe in UCS-2)
_SOFT_HYPHEN = re.compile(r"(\w+)[\x02\ufffe](\w+)")
_NEEDS_PASSWORD = "encrypted PDF: needs a password (not supported)"


def load_pdf(path: Path, *, engine: str = "auto", limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    """Load a PDF page by page; raises CorruptFile, EncryptedFile or EmptyFile with a one-line reason."""
    if engine not in PDF_ENGINES:
        raise ConfigError(f"pdf_engine must be one of {', '.join(PDF_ENGINES)}; got {engine!r}")
    reader, reader_error = _open_pypdf(path)
    pdfium, pdfium_error = _open_pdfium(path) if engine != "pypdf" else (None, None)
    if pdfium is None and (reader is None or engine == "pdfium"):
        raise _open_error(pdfium_error, reader_error)
    try:
        with PDFIUM_LOCK:
            texts, engines = _extract(pdfium, reader if engine != "pdfium" else None, path.name, limits)
            headings = _pdfium_outline(pdfium) if pdfium is not None else None
        if pdfium is None and any(t is not None and not t.strip() for t in texts):
            pdfium, _ = _open_pdfium(path)  # pypdf engine: PDFium only renders the scanned pages for OCR
        ocr_reason = _ocr(path, pdfium, texts, engines)
    finally:
        if pdfium is not None:
            with PDFIUM_LOCK:
                pdfium.close()
    if headings is None:
        headings = _outline_headings(reader)
    return _documents(texts, engines, _title(reader), headings, path, ocr_reason)


def _open_pypdf(path: Path) -> tuple[Any, str | None]:
    """pypdf reader (decrypted when the user password is empty), or (None, why it cannot open)."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    pypdf_logger = logging.getLogger("pypdf")
    if pypdf_logger.level == logging.NOTSET:  # pypdf logs errors for every odd file it recovers from;
        pypdf_logger.setLevel(logging.CRITICAL)  # we report failures ourselves (unless the user set a level)
    try:
        reader = PdfReader(str(path), strict=False)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        return None, f"not a valid PDF ({one_line(exc)})"
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except (DependencyError, NotImplementedError) as exc:  # PDFium may still open it
            return None, f"encrypted PDF: unsupported encryption ({one_line(exc)})"
        except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
            ok = 0
        if not ok:
            raise EncryptedFile(_NEEDS_PASSWORD)
    return reader, None


def _open_pdfium(path: Path) -> tuple[Any, str | None]:
    import pypdfium2 as pdfium

    try:
        with PDFIUM_LOCK:
            return pdfium.PdfDocument(str(path)), None
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            return None, _NEEDS_PASSWORD
        return None, f"not a valid PDF ({one_line(exc)})"


def _open_error(pdfium_error: str | None, reader_error: str | None) -> Exception:
    if reader_error and reader_error.startswith("encrypted"):
        reason = reader_error
    else:
        reason = pdfium_error or reader_error or "not a valid PDF"
    return EncryptedFile(reason) if reason.startswith("encrypted") else CorruptFile(reason)


def _extract(pdfium: Any, reader: Any, name: str,
             limits: ParseLimits) -> tuple[list[str | None], list[str]]:
    """Raw text of every page (None: unreadable) and the engine that read it."""
    texts: list[str | None] = []
    engines: list[str] = []
    n_pages = len(pdfium) if pdfium is not None else _pypdf_page_count(reader)
    limits.check_pages(n_pages, "PDF pages")
    for index in range(n_pages):
        text = _pdfium_page_text(pdfium, index, name) if pdfium is not None else None
        used = "pdfium"
        if text is None and reader is not None:
            text, used = _pypdf_page_text(reader, index, name), "pypdf"
        texts.append(text)
        engines.append(used)
    return texts, engines


def _pypdf_page_count(reader: Any) -> int:
    from pypdf.errors import FileNotDecryptedError

    try:
        return len(reader.pages)
    except FileNotDecryptedError:
        raise EncryptedFile(_NEEDS_PASSWORD) from None
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        raise CorruptFile(f"not a valid PDF ({one_line(exc)})") from None


def _pdfium_page_text(pdfium: Any, index: int, name: str) -> str | None:
    try:
        page = pdfium[index]
        try:
            textpage = page.get_textpage()
            # get_text_range, not get_text_bounded: the bounded text is clipped at the page box (long URLs
            # running into the margin lose their end) and drops some generated line breaks ("Wedding3")
            text = join_split_rows(textpage, textpage.get_text_range())
            textpage.close()
        finally:
            page.close()
    except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
        logger.warning("%s: page %d unreadable by PDFium: %s", name, index + 1, one_line(exc))
        return None
    return text


def join_split_rows(textpage: Any, text: str) -> str:
    """Undo PDFium's line breaks inside one visual line (table cells whose baselines differ slightly).

    A break is removed when the character after it sits on the same line as the one before it (their
    boxes overlap vertically by half a glyph) and to its right, so a table row stays on one line.
    """
    if "\r\n" not in text:
        return text
    units = [0]  # PDFium counts UTF-16 units: map text positions to its char indexes
    for ch in text:
        units.append(units[-1] + (2 if ord(ch) > 0xFFFF else 1))
    if units[-1] != textpage.count_chars():
        return text
    parts = text.split("\r\n")
    out = [parts[0]]
    pos = len(parts[0])
    for part in parts[1:]:
        if out[-1].strip() and part.strip() and _same_line(textpage, units[pos - 1], units[pos + 2]):
            out[-1] += " " + part
        else:
            out.append(part)
        pos += 2 + len(part)
    return "\n".join(out)


def _same_line(textpage: Any, before: int, after: int) -> bool:
    left1, bottom1, right1, top1 = textpage.get_charbox(before)
    left2, bottom2, right2, top2 = textpage.get_charbox(after)
    overlap = min(top1, top2) - max(bottom1, bottom2)
    height = min(top1 - bottom1, top2 - bottom2)
    return height > 0 and overlap >= 0.5 * height and left2 >= right1 - 1


def resolve_soft_hyphens(pages: list[str | None]) -> list[str | None]:
    """``main\x02tainers`` -> ``maintainers``, but ``debian\x02faq`` -> ``debian-faq`` when the document
    writes ``debian-faq`` elsewhere, or when the second part does not start in lower case."""
    if not any(p and ("\x02" in p or "\ufffe" in p) for p in pages):
        return pages
    hyphenated = {m.lower() for p in pages if p for m in re.findall(r"\w+-\w+", p)}

    def join(m: re.Match[str]) -> str:
        a, b = m.group(1), m.group(2)
        keep = f"{a}-{b}".lower() in hyphenated or not b[0].islower()
        return f"{a}-{b}" if keep else a + b

    return [_SOFT_HYPHEN.sub(join, p).replace("\ufffe", "") if p else p for p in pages]


def _pypdf_page_text(reader: Any, index: int, name: str) -> str | None:
    try:
        return reader.pages[index].extract_text() or ""
    except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
        logger.warning("%s: page %d unreadable: %s", name, index + 1, one_line(exc))
        return None


def _scanned(texts: list[str | None], pdfium: Any) -> list[int]:
    """Indexes of the pages without a text layer that show something (images, paths): OCR candidates."""
    blank = [i for i, t in enumerate(texts) if t is not None and not t.strip()]
    if pdfium is None or not blank:
        return blank
    shown = []
    with PDFIUM_LOCK:
        for index in blank:
            try:
                page = pdfium[index]
                if next(iter(page.get_objects(max_depth=2)), None) is not None:
                    shown.append(index)
                page.close()
            except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
                logger.debug("page %d: objects unreadable: %s", index + 1, one_line(exc))
    return shown


def _ocr(path: Path, pdfium: Any, texts: list[str | None], engines: list[str]) -> str:
    """OCR the scanned pages in place (``texts``/``engines``); returns the reason if no page has text."""
    scanned = _scanned(texts, pdfium)
    if not scanned:
        return "no text layer (blank pages)"
    if pdfium is None:
        return "no text layer (and PDFium cannot render the pages for OCR)"
    if not ocr.available():
        logger.warning("%s: %d page(s) without a text layer skipped; %s", path.name, len(scanned),
                       ocr.INSTALL_HINT)
        return "no text layer; " + ocr.INSTALL_HINT
    found = 0
    for index in scanned:
        try:
            with PDFIUM_LOCK:
                page = pdfium[index]
                scale = ocr.render_scale(*page.get_size())
                image = page.render(scale=scale).to_numpy()
                page.close()
            text = ocr.read_image(image)
        except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
            logger.warning("%s: OCR of page %d failed: %s", path.name, index + 1, one_line(exc))
            continue
        if text.strip():
            texts[index], engines[index] = text, "ocr"
            found += 1
    logger.info("%s: OCR read %d of %d page(s) without a text layer", path.name, found, len(scanned))
    return f"no text layer, and OCR found no text on {len(scanned)} page(s)"


def _documents(texts: list[str | None], engines: list[str], title: str | None, headings: dict[int, str],
               path: Path, no_text_reason: str) -> list[Document]:
    if not texts:
        raise EmptyFile("PDF has no pages")
    if all(t is None for t in texts):
        raise CorruptFile("not a valid PDF (no page could be read)")
    pages, furniture = strip_furniture([normalize_text(t) if t else "" for t in resolve_soft_hyphens(texts)])
    if furniture.total:
        logger.debug("%s: %d furniture lines dropped (%d repeated, %d page numbers, %d TOC), e.g. %s",
                     path.name, furniture.total, furniture.repeated, furniture.page_numbers, furniture.toc,
                     furniture.samples[:2])
    width = full_line_width([line for page in pages for line in page.split("\n")])
    docs: list[Document] = []
    heading: str | None = None
    for index, text in enumerate(pages):
        heading = headings.get(index + 1, heading)
        doc = make_document(normalize_cjk(text, width), "pdf", page=index + 1, title=title, heading=heading,
                            pdf_engine=engines[index], ocr=True if engines[index] == "ocr" else None)
        if doc.text:
            docs.append(doc)
    if not docs:
        raise EmptyFile("no extractable text" if any(t and t.strip() for t in texts) else no_text_reason)
    return docs


def _title(reader: Any) -> str | None:
    if reader is None:
        return None
    try:
        meta = reader.metadata
        title = meta.title if meta else None
    except Exception:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        return None
    return " ".join(str(title).split()) or None if title else None


def _pdfium_outline(pdfium: Any) -> dict[int, str] | None:
    """Like :func:`_outline_headings`, read by PDFium (same entries, 10-20x faster); None if unreadable."""
    result: dict[int, str] = {}
    try:
        for item in pdfium.get_toc(max_depth=20):
            dest = item.get_dest()
            number = dest.get_index() + 1 if dest is not None and dest.get_index() is not None else 0
            title = " ".join((item.get_title() or "").split())
            if number > 0 and title and number not in result:
                result[number] = title
    except Exception as exc:  # noqa: BLE001 - parsers raise arbitrary types on bad input
        logger.debug("outline unreadable by PDFium: %s", one_line(exc))
        return None
    return result


def _outline_headings(reader: Any) -> dict[int, str]:
    """Map 1-based page numbers to the first outline entry that points at them (pypdf)."""
    result: dict[int, str] = {}
    if reader is None:
        return result

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
