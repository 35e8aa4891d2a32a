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
from dataclasses import dataclass
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
        objs.append(f"<< /Type /Pages /Kids [{number + 1} 0 R {number + 1} 0 R] /Count {2 ** (levels - level)} >>")
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
        extra = b"".join(f'<row r="{r}"><c r="XFD{r}" t="inlineStr"><is><t>far {r}</t></is></c></row>'.encode()
                         for r in range(3, 3 + n_rows))
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
    path.write_text(",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("v" for _ in range(columns)) + "\n")
    return path
