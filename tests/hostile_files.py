"""Writers of small hostile files (bombs, lies, damage) and the catalogue of bad inputs they make.

Shared by the tests (``tests/test_limits.py`` runs every case at a small scale) and by
``benchmarks/hostile_inputs.py`` (every case once at full scale, for ``docs/reliability.md``). Each
:class:`Case` writes its file(s) under a folder and says what must happen: the file loads and its text
holds ``expect_text``, or it fails with a :class:`~kb_assistant.errors.LoaderError` whose reason
matches ``expect_error``.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fixtures_files as F

MB = 2**20


# ---------------------------------------------------------------- raw builders
def pdf_bytes(objects: list[str]) -> bytes:
    """A PDF from object bodies (object 1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stream(text: str) -> str:
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
    return f"<< /Length {len(content)} >>\nstream\n{content}\nendstream"


_FONT = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def shared_page_tree_pdf(path: Path, levels: int = 15) -> Path:
    """~2 KB: every Pages node lists the same child twice, so 2**levels pages share one page object."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(levels):
        number = 2 + level
        kid = f"{number + 1} 0 R"
        objs.append(f"<< /Type /Pages /Kids [{kid} {kid}] /Count {2 ** (levels - level)} >>")
    page = 2 + levels
    objs.append(f"<< /Type /Page /MediaBox [0 0 612 792] /Contents {page + 1} 0 R "
                f"/Resources << /Font << /F1 {page + 2} 0 R >> >> >>")
    objs += [_stream("Shared page text about the warehouse robots."), _FONT]
    path.write_bytes(pdf_bytes(objs))
    return path


def lying_count_pdf(path: Path) -> Path:
    """One real page under a page tree that claims a million."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream("The only real page says the VPN port is 1194."), _FONT]
    path.write_bytes(pdf_bytes(objs))
    return path


def cyclic_page_tree_pdf(path: Path) -> Path:
    """A Pages node that lists itself among its kids (a loop), next to one real page."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream("Looped tree page text."), _FONT]
    path.write_bytes(pdf_bytes(objs))
    return path


def truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def _rewrite_zip(path: Path, source: Path, replace: dict[str, bytes | Callable[[bytes], bytes]]) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            new = replace.get(info.filename)
            if new is not None:
                data = new(data) if callable(new) else new
            zout.writestr(info.filename, data)
    return path


def docx_xml_bomb(path: Path, xml_mb: float) -> Path:
    """A real DOCX whose body is ``xml_mb`` MB of one-word paragraphs (a few hundred KB zipped)."""
    source = F.make_docx(path.with_suffix(".src.docx"), [("p", "seed")])
    para = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>"

    def body(xml: bytes) -> bytes:
        start = xml.index(b"<w:body>") + len(b"<w:body>")
        return xml[:start] + para * int(xml_mb * MB / len(para)) + xml[start:]

    _rewrite_zip(path, source, {"word/document.xml": body})
    source.unlink()
    return path


def docx_many_paragraphs(path: Path, n: int) -> Path:
    """A DOCX of ``n`` short styled paragraphs (real prose shape, under the XML cap)."""
    source = F.make_docx(path.with_suffix(".src.docx"), [("p", "seed")])
    para = (b'<w:p><w:pPr><w:pStyle w:val="Normal"/></w:pPr><w:r><w:t>Paragraph about the leave '
            b'policy of the company.</w:t></w:r></w:p>')

    def body(xml: bytes) -> bytes:
        start = xml.index(b"<w:body>") + len(b"<w:body>")
        return xml[:start] + para * n + xml[start:]

    _rewrite_zip(path, source, {"word/document.xml": body})
    source.unlink()
    return path


def docx_xxe(path: Path) -> Path:
    """A DOCX whose document.xml declares an external entity pointing at /etc/passwd."""
    source = F.make_docx(path.with_suffix(".src.docx"), [("p", "ENTITYHERE")])

    def body(xml: bytes) -> bytes:
        decl_end = xml.index(b"?>") + 2
        dtd = b'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        return xml[:decl_end] + dtd + xml[decl_end:].replace(b"ENTITYHERE", b"before &xxe; after")

    _rewrite_zip(path, source, {"word/document.xml": body})
    source.unlink()
    return path


def pptx_xml_bomb(path: Path, xml_mb: float) -> Path:
    source = F.make_pptx(path.with_suffix(".src.pptx"), [{"title": "Bomb", "bullets": ["seed"]}])
    run = b"<a:p><a:r><a:t>x</a:t></a:r></a:p>"

    def body(xml: bytes) -> bytes:
        at = xml.index(b"</a:p>") + len(b"</a:p>")
        return xml[:at] + run * int(xml_mb * MB / len(run)) + xml[at:]

    _rewrite_zip(path, source, {"ppt/slides/slide1.xml": body})
    source.unlink()
    return path


def xlsx_with_dimension(path: Path, ref: str, rows: list[list[object]]) -> Path:
    """A real XLSX whose sheet claims ``<dimension ref=ref>`` whatever its cells."""
    source = F.make_xlsx(path.with_suffix(".src.xlsx"), {"Sheet": rows})

    def dim(xml: bytes) -> bytes:
        return re.sub(rb'<dimension ref="[^"]*"\s*/>', f'<dimension ref="{ref}"/>'.encode(), xml)

    _rewrite_zip(path, source, {"xl/worksheets/sheet1.xml": dim})
    source.unlink()
    return path


def xlsx_far_cells(path: Path, n_rows: int) -> Path:
    """Rows whose only cell sits in the last column (XFD) and a last row numbered 1,048,576."""
    source = F.make_xlsx(path.with_suffix(".src.xlsx"), {"Sheet": [["Name", "Value"], ["seed", 1]]})

    def rows(xml: bytes) -> bytes:
        cell = '<row r="{0}"><c r="XFD{0}" t="inlineStr"><is><t>far {0}</t></is></c></row>'
        extra = b"".join(cell.format(r).encode() for r in range(3, 3 + n_rows))
        extra += b'<row r="1048576"><c r="A1048576"><v>42</v></c></row>'
        return xml.replace(b"</sheetData>", extra + b"</sheetData>")

    _rewrite_zip(path, source, {"xl/worksheets/sheet1.xml": rows})
    source.unlink()
    return path


def nested_divs(path: Path, depth: int) -> Path:
    path.write_text("<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>")
    return path


def flat_html(path: Path, paragraphs: int) -> Path:
    body = "".join(f"<p>Paragraph {i} of the handbook explains a policy.</p>" for i in range(paragraphs))
    path.write_text(f"<html><head><title>Big</title></head><body>{body}</body></html>")
    return path


def nested_multipart_eml(path: Path, depth: int) -> Path:
    head = "From: a@example.com\nTo: b@example.com\nSubject: Nested\nMIME-Version: 1.0\n"
    parts = []
    for level in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n')
    inner = "Content-Type: text/plain\n\nThe innermost part says hello.\n"
    tail = "".join(f"\n--b{level}--\n" for level in reversed(range(depth)))
    path.write_text(head + "".join(parts) + inner + tail)
    return path


def big_attachment_eml(path: Path, mb: float) -> Path:
    return F.make_eml(path, subject="Quarterly report", body="The report is attached.",
                      attachments={"report.bin": os.urandom(int(mb * MB))})


def one_line_text(path: Path, mb: float, *, spaces: bool = True) -> Path:
    """``mb`` MB on one line: words (no sentence end) or, ``spaces=False``, one giant word."""
    unit = b"lorem ipsum dolor sit amet " if spaces else b"x"
    path.write_bytes(unit * int(mb * MB / len(unit)))
    return path


def tiny_sentences(path: Path, mb: float) -> Path:
    path.write_bytes(b"a. " * int(mb * MB / 3))
    return path


def prose(path: Path, mb: float) -> Path:
    sentence = ("The employee handbook describes the leave policy, the travel rules and the expense "
                "process of the company in plain words. ")
    lines = [sentence * 5 + "\n" for _ in range(int(mb * MB / (len(sentence) * 5 + 1)))]
    path.write_text("".join(lines))
    return path


def cjk_one_line(path: Path, mb: float) -> Path:
    unit = "员工每年享有十五天带薪年假报销单须在消费后三十天内提交"
    path.write_text(unit * int(mb * MB / len(unit.encode("utf-8"))), encoding="utf-8")
    return path


def deep_json(path: Path, depth: int) -> Path:
    path.write_text("[" * depth + "]" * depth)
    return path


def csv_huge_field(path: Path, chars: int) -> Path:
    path.write_text('name,notes\nalice,"' + "z" * chars + '"\n')
    return path


def csv_wide_row(path: Path, columns: int) -> Path:
    header = ",".join(f"c{i}" for i in range(columns))
    path.write_text(header + "\n" + ",".join("v" for _ in range(columns)) + "\n")
    return path


def control_chars(path: Path) -> Path:
    """Terminal escapes (colour, window title), a bidi override and a bell inside ordinary text."""
    text = ("Release notes for the VPN client, version 2.\n" * 20
            + "Title\x1b[31m red \x1b]0;owned\x07 \u202eevil\u202c and a bell\x07.\n"
            + "The VPN port is 1194.\n")
    path.write_text(text)
    return path


def many_zip_members(path: Path, n: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
        for i in range(n):
            zf.writestr(f"word/media/{i}.bin", b"")
    return path


def many_sheets(path: Path, n: int) -> Path:
    return F.make_xlsx(path, {f"S{i}": [["Name"], [f"row {i}"]] for i in range(n)})


def many_slides(path: Path, n: int) -> Path:
    return F.make_pptx(path, [{"title": f"Slide {i}", "bullets": ["point"]} for i in range(n)])


# ---------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class Case:
    """One kind of bad input: ``build(folder, full)`` writes it (``full``: the issue's size, else a
    size the tests can afford) and returns its path; it must load with ``text`` in its text, or fail
    with a reason matching ``error`` (a regex). ``limits``: ParseLimits overrides the case needs."""

    name: str
    kind: str
    what: str
    build: Callable[[Path, bool], Path]
    text: str | None = None
    error: str | None = None
    limits: dict = field(default_factory=dict)
    #: for the chunker: the chunks must fit the budget (the text may also make no chunk at all)
    chunk: bool = False


def _sized(full: bool, big: float, small: float) -> float:
    return big if full else small


LIMIT = r"\(\[ingest\] {}; raise it in config\.toml\)"

CASES: list[Case] = [
    # PDF
    Case("pdf-shared-page-tree", "pdf", "2 KB PDF whose page tree shares one page 32,768 times",
         lambda d, full: shared_page_tree_pdf(d / "shared.pdf"), error=r"32,768 PDF pages, more than 10,000 "
         + LIMIT.format("max_pages")),
    Case("pdf-lying-page-count", "pdf", "page tree claiming 1,000,000 pages over one real page",
         lambda d, full: lying_count_pdf(d / "lying.pdf"), error=r"1,000,000 PDF pages"),
    Case("pdf-cyclic-page-tree", "pdf", "a Pages node listing itself as a kid (a loop)",
         lambda d, full: cyclic_page_tree_pdf(d / "cyclic.pdf"), text="Looped tree page text."),
    Case("pdf-truncated", "pdf", "a real 3-page PDF cut in half",
         lambda d, full: truncated(d / "half.pdf", F.make_pdf(d / "whole.pdf", ["One.", "Two.", "3."]))),
    Case("pdf-garbage-body", "pdf", "%PDF header, then garbage",
         lambda d, full: F.make_corrupt_pdf(d / "corrupt.pdf"), error=r"not a valid PDF"),
    Case("pdf-random-bytes", "pdf", "random bytes named .pdf",
         lambda d, full: _random(d / "random.pdf", 4096), error=r"."),
    Case("pdf-encrypted", "pdf", "password-protected PDF",
         lambda d, full: F.make_encrypted_pdf(d / "secret.pdf"), error=r"encrypted PDF: needs a password"),
    Case("pdf-no-eof", "pdf", "PDF without %%EOF", lambda d, full: F.make_pdf_without_eof(d / "noeof.pdf"),
         text="Read by PDFium alone."),
    Case("pdf-too-many-pages", "pdf", "12 real pages over max_pages = 10",
         lambda d, full: F.make_pdf(d / "pages.pdf", [f"Page {i}." for i in range(12)]),
         error=r"12 PDF pages, more than 10 " + LIMIT.format("max_pages"), limits={"max_pages": 10}),
    # DOCX
    Case("docx-zip-bomb", "docx", "200 KB zip inflating to 200 MB",
         lambda d, full: F.make_zip_bomb_docx(d / "bomb.docx", uncompressed_mb=int(_sized(full, 200, 120))),
         error=r"DOCX expands to more than 100 MB \(zip bomb\?\) " + LIMIT.format("max_unzipped_mb")),
    Case("docx-xml-bomb", "docx", "290 KB DOCX holding 95 MB of XML",
         lambda d, full: docx_xml_bomb(d / "xml.docx", _sized(full, 95, 40)),
         error=r"DOCX part word/document\.xml is \d+\.\d MB of XML, more than 32 MB "
         + LIMIT.format("max_xml_mb")),
    Case("docx-many-paragraphs", "docx", "DOCX of short styled paragraphs under the XML cap",
         lambda d, full: docx_many_paragraphs(d / "many.docx", int(_sized(full, 200_000, 20_000))),
         text="Paragraph about the leave policy", chunk=True),
    Case("docx-external-entity", "docx", "document.xml declaring an external entity (XXE) to /etc/passwd",
         lambda d, full: docx_xxe(d / "xxe.docx"), text="before"),
    Case("docx-not-a-zip", "docx", "plain text named .docx",
         lambda d, full: F.make_not_a_zip(d / "fake.docx"), error=r"."),
    Case("docx-no-document", "docx", "zip archive without word/document.xml",
         lambda d, full: _zip(d / "empty.docx", {"[Content_Types].xml": b"<Types/>"}), error=r"."),
    Case("docx-truncated", "docx", "a real DOCX cut in half",
         lambda d, full: truncated(d / "half.docx", F.make_docx(d / "whole.docx")), error=r"."),
    Case("docx-many-parts", "docx", "zip with 60,000 members",
         lambda d, full: many_zip_members(d / "parts.docx", 60_000), error=r"more than 50,000 parts"),
    # XLSX
    Case("xlsx-dimension-bomb", "xlsx", "1.5 KB XLSX whose <dimension> is A1:XFD1048576",
         lambda d, full: xlsx_with_dimension(d / "dim.xlsx", "A1:XFD1048576",
                                             [["Name", "Dept"], ["Alice", "HR"]]),
         text="Name: Alice; Dept: HR"),
    Case("xlsx-stale-dimension", "xlsx", "<dimension ref=A1:A1> over 3 columns x 100 rows",
         lambda d, full: xlsx_with_dimension(d / "stale.xlsx", "A1:A1", [["Name", "Dept", "Floor"]]
                                             + [[f"P{i}", "HR", i] for i in range(100)]),
         text="Name: P99; Dept: HR; Floor: 99"),
    Case("xlsx-far-cells", "xlsx", "rows whose only cell is in column XFD, and row 1,048,576",
         lambda d, full: xlsx_far_cells(d / "far.xlsx", int(_sized(full, 20_000, 2_000))), text="far 1999"),
    Case("xlsx-too-many-sheets", "xlsx", "5 sheets over max_pages = 3",
         lambda d, full: many_sheets(d / "sheets.xlsx", 5), error=r"5 XLSX sheets, more than 3",
         limits={"max_pages": 3}),
    Case("xlsx-truncated", "xlsx", "a real XLSX cut in half",
         lambda d, full: truncated(d / "half.xlsx", F.make_xlsx(d / "whole.xlsx")), error=r"."),
    # PPTX
    Case("pptx-xml-bomb", "pptx", "one slide holding 40 MB of XML",
         lambda d, full: pptx_xml_bomb(d / "xml.pptx", 40),
         error=r"more than 32 MB " + LIMIT.format("max_xml_mb")),
    Case("pptx-too-many-slides", "pptx", "4 slides over max_pages = 2",
         lambda d, full: many_slides(d / "slides.pptx", 4), error=r"4 PPTX slides, more than 2",
         limits={"max_pages": 2}),
    Case("pptx-truncated", "pptx", "a real PPTX cut in half",
         lambda d, full: truncated(d / "half.pptx", F.make_pptx(d / "whole.pptx")), error=r"."),
    # HTML
    Case("html-nested-divs", "html", "1,000,000 nested <div>",
         lambda d, full: nested_divs(d / "deep.html", int(_sized(full, 1_000_000, 100_000))),
         error=r"HTML nested more than 256 levels deep"),
    Case("html-flat-big", "html", "HTML of many paragraphs (11 MB full scale)",
         lambda d, full: flat_html(d / "flat.html", int(_sized(full, 200_000, 20_000))),
         text="Paragraph 19999 of the handbook", chunk=True),
    Case("html-scripts-only", "html", "a page of scripts and styles only",
         lambda d, full: _write(d / "scripts.html",
                                "<html><script>var a = 1;</script><style>p{}</style></html>"),
         error=r"HTML page has no visible text"),
    Case("html-binary", "html", "random bytes named .html", lambda d, full: _random(d / "bin.html", 8192),
         error=r"."),
    # E-mail
    Case("eml-nested-multipart", "eml", "multipart nested 1,000 levels deep",
         lambda d, full: nested_multipart_eml(d / "nested.eml", 1000), error=r"not a valid e-mail"),
    Case("eml-big-attachment", "eml", "20 MB attachment",
         lambda d, full: big_attachment_eml(d / "big.eml", _sized(full, 20, 4)), text="report.bin"),
    Case("eml-no-headers", "eml", "text without any mail header",
         lambda d, full: _write(d / "plain.eml", "just some words\nno headers at all\n"),
         error=r"no From/To/Subject/Date headers"),
    # text
    Case("txt-one-line-words", "txt", "text on one line without a sentence end (48 MB full scale)",
         lambda d, full: one_line_text(d / "line.txt", _sized(full, 48, 2)), text="lorem ipsum", chunk=True),
    Case("txt-one-giant-word", "txt", "one 'word' of megabytes, no space",
         lambda d, full: one_line_text(d / "word.txt", _sized(full, 20, 2), spaces=False), text="xxxx",
         chunk=True),
    Case("txt-tiny-sentences", "txt", "'a. ' repeated (millions of sentences)",
         lambda d, full: tiny_sentences(d / "tiny.txt", _sized(full, 20, 2)), text="a. a.", chunk=True),
    Case("txt-prose", "txt", "ordinary prose (20 MB full scale)", lambda d, full: prose(d / "prose.txt",
         _sized(full, 20, 2)), text="leave policy", chunk=True),
    Case("txt-cjk-one-line", "txt", "Chinese on one line without punctuation",
         lambda d, full: cjk_one_line(d / "cjk.txt", _sized(full, 20, 2)), text="带薪年假", chunk=True),
    Case("txt-control-chars", "txt", "ANSI escapes, NUL, bidi overrides in the text",
         lambda d, full: control_chars(d / "ctrl.txt"), text="The VPN port is 1194."),
    Case("txt-binary", "txt", "random bytes named .txt", lambda d, full: _random(d / "bin.txt", 8192),
         error=r"."),
    Case("txt-empty", "txt", "0 bytes", lambda d, full: _write(d / "empty.txt", ""), error=r"empty file"),
    Case("txt-too-much-text", "txt", "more text than max_text_chars = 1000",
         lambda d, full: prose(d / "long.txt", 0.01), error=r"more than 1,000 characters of text "
         + LIMIT.format("max_text_chars"), limits={"max_text_chars": 1000}),
    # JSON / CSV
    Case("json-deep", "json", "[ nested 100,000 deep", lambda d, full: deep_json(d / "deep.json", 100_000),
         error=r"nested too deeply"),
    Case("jsonl-all-bad", "jsonl", "JSON Lines where no line parses",
         lambda d, full: _write(d / "bad.jsonl", "{oops\n[1,\n"), error=r"not valid JSON Lines"),
    Case("csv-huge-field", "csv", "one 200,000-character field",
         lambda d, full: csv_huge_field(d / "field.csv", 200_000), error=r"field larger than field limit"),
    Case("csv-wide-row", "csv", "a row of 100,000 columns (20,000 small scale)",
         lambda d, full: csv_wide_row(d / "wide.csv", int(_sized(full, 100_000, 20_000))), text="c19999: v"),
    # the budgets of the parser process
    Case("budget-timeout", "html", "a parse longer than parse_timeout_s = 1",
         lambda d, full: flat_html(d / "slow.html", 100_000), error=r"parsing took longer than 1 s "
         + LIMIT.format("parse_timeout_s"), limits={"timeout_s": 1.0}),
    Case("budget-memory", "docx", "a DOCX whose XML tree needs more than parse_memory_mb = 250",
         lambda d, full: docx_many_paragraphs(d / "mem.docx", 220_000),
         error=r"parse_memory_mb", limits={"memory_mb": 250.0}),
]


def _random(path: Path, size: int) -> Path:
    import random

    path.write_bytes(random.Random(size).randbytes(size))
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


class PeakRSS:
    """Peak resident memory of this process while the ``with`` block runs, sampled every 10 ms
    (``.peak_mb`` above the level at entry)."""

    def __init__(self) -> None:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start_mb = self.max_mb = _rss_mb()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.max_mb = max(self.max_mb, _rss_mb())

    @property
    def peak_mb(self) -> float:
        return max(self.max_mb - self.start_mb, 0.0)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.max_mb = max(self.max_mb, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
