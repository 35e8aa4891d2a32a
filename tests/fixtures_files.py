"""Writers of tiny real files for tests (import these; no pytest fixtures here).

Every function takes the target path first, writes the file, and returns the path.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

FIXED_DATE = _dt.datetime(2024, 1, 15, 9, 30, tzinfo=_dt.UTC)


def cjk_font_path() -> str | None:
    """A TrueType font with Chinese glyphs (e.g. apt package fonts-wqy-microhei), or None."""
    candidates = [
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ]
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10)
        candidates += [line.split(":")[0].strip() for line in out.stdout.splitlines()]
    except (OSError, subprocess.SubprocessError):
        pass
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and candidate.endswith((".ttf", ".ttc", ".otf")):
            return candidate
    return None


PageFormat = str | tuple[float, float]


def _pdf(title: str | None = None, font: str | None = None, page_format: PageFormat = "A4") -> Any:
    from fpdf import FPDF

    pdf = FPDF(format=page_format)
    pdf.set_creation_date(FIXED_DATE)
    if title:
        pdf.set_title(title)
    if font:
        pdf.add_font("body", fname=font, collection_font_number=0)
        pdf.add_font("body", style="B", fname=font, collection_font_number=0)
    pdf.set_font("body" if font else "Helvetica", size=12)
    return pdf


def make_pdf(path: str | Path, pages: list[str] | None = None, *, title: str | None = None,
             headings: list[str] | None = None, font: str | None = None, header: str | None = None,
             footer: str | None = None, page_format: PageFormat = "A4") -> Path:
    """A text PDF, one page per string; ``headings`` (one per page) become outline entries.

    ``font``: path of a TTF/TTC font, needed for non-Latin text (see :func:`cjk_font_path`).
    ``header`` / ``footer``: running text at the top / bottom of every page; ``{page}`` and ``{pages}``
    in them are replaced by the page number and count. ``page_format``: "A4", "A5" or (width, height) mm.
    """
    pages = pages if pages is not None else ["Hello from page one.", "Second page text."]
    pdf = _pdf(title, font, page_format)
    family = "body" if font else "Helvetica"

    def running(text: str | None, y: float) -> None:
        if text:
            pdf.set_y(y)
            pdf.cell(0, 5, text.format(page=pdf.page_no(), pages=len(pages)), align="C")
            pdf.set_y(20)

    pdf.header = lambda: running(header, 8)  # fpdf2 calls these on every page
    pdf.footer = lambda: running(footer, -15)
    for i, text in enumerate(pages):
        pdf.add_page()
        if headings and i < len(headings) and headings[i]:
            pdf.start_section(headings[i])
            pdf.set_font(family, style="B", size=14)
            pdf.multi_cell(0, 8, headings[i], new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(family, size=12)
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    path = Path(path)
    pdf.output(str(path))
    return path


def make_no_text_pdf(path: str | Path, page_format: PageFormat = "A4") -> Path:
    """A PDF whose only page has a drawn rectangle and no text layer (a 'scanned' page)."""
    pdf = _pdf(page_format=page_format)
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    path = Path(path)
    pdf.output(str(path))
    return path


def make_image_pdf(path: str | Path, pages: list[str], *, font: str | None = None, dpi: int = 200,
                   page_format: PageFormat = "A4") -> Path:
    """An image-only ('scanned') PDF: ``pages`` typeset as by :func:`make_pdf`, each page rendered to a
    ``dpi`` bitmap (pypdfium2) and placed as the only content of its page. No text layer."""
    import pypdfium2 as pdfium
    from fpdf import FPDF

    path = Path(path)
    text_pdf = path.with_name(path.stem + ".text.pdf")
    make_pdf(text_pdf, pages, font=font, page_format=page_format)
    src = pdfium.PdfDocument(str(text_pdf))
    try:
        if len(src) != len(pages):
            raise ValueError(f"a page of text overflowed ({len(src)} pages for {len(pages)} texts)")
        images = [src[i].render(scale=dpi / 72).to_pil().convert("L") for i in range(len(src))]
    finally:
        src.close()
        text_pdf.unlink()
    pdf = FPDF(format=page_format)
    pdf.set_creation_date(FIXED_DATE)
    for image in images:
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=pdf.w, h=pdf.h)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: str | Path, pages: list[str] | None = None, *, user_password: str = "secret",
                       owner_password: str = "owner") -> Path:
    """An RC4-encrypted PDF; ``user_password=""`` gives one that opens without a password."""
    from pypdf import PdfReader, PdfWriter

    path = Path(path)
    plain = path.with_name(path.stem + ".plain.pdf")
    make_pdf(plain, pages or ["Confidential text inside an encrypted PDF."])
    writer = PdfWriter()
    for page in PdfReader(str(plain)).pages:
        writer.add_page(page)
    writer.encrypt(user_password=user_password, owner_password=owner_password)
    with path.open("wb") as fh:
        writer.write(fh)
    plain.unlink()
    return path


def make_table_pdf(path: str | Path, rows: list[list[str]], *, font: str | None = None) -> Path:
    """A one-page PDF with a ruled table (fpdf2 ``table()``); the first row is the header."""
    pdf = _pdf(None, font)
    pdf.add_page()
    pdf.multi_cell(0, 6, "Leave types and days.", new_x="LMARGIN", new_y="NEXT")
    with pdf.table() as table:
        for row in rows:
            cells = table.row()
            for value in row:
                cells.cell(value)
    path = Path(path)
    pdf.output(str(path))
    return path


def make_headerless_pdf(path: str | Path, text: str = "Recovered by the fallback engine.") -> Path:
    """A PDF whose ``%PDF-`` header line is missing: PDFium refuses it, pypdf reads it."""
    path = Path(path)
    make_pdf(path, [text])
    data = path.read_bytes()
    path.write_bytes(data[data.index(b"\n") + 1:])
    return path


def make_pdf_without_eof(path: str | Path, text: str = "Read by PDFium alone.") -> Path:
    """A PDF without its ``%%EOF`` marker: pypdf refuses it, PDFium reads it."""
    path = Path(path)
    make_pdf(path, [text])
    path.write_bytes(path.read_bytes().replace(b"%%EOF", b""))
    return path


def make_damaged_page_pdf(path: str | Path, pages: list[str]) -> Path:
    """A PDF whose last page has its content stream zeroed out (the other pages intact)."""
    import re

    path = Path(path)
    make_pdf(path, pages)
    data = path.read_bytes()
    last = list(re.finditer(rb"stream\n(.*?)\nendstream", data, re.S))[-1]
    path.write_bytes(data[:last.start(1)] + b"\0" * len(last.group(1)) + data[last.end(1):])
    return path


def make_corrupt_pdf(path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nthis is not a pdf body\n%%EOF")
    return path


def make_docx(path: str | Path, blocks: list[tuple[str, Any]] | None = None, *,
              title: str | None = None) -> Path:
    """``blocks``: ("h1"|"h2"|"h3", text), ("p", text) or ("table", [[header...], [row...], ...]);
    a table can also be ``{"rows": [...], "merge": [((r1, c1), (r2, c2)), ...]}`` (cells merged)."""
    import docx

    blocks = blocks if blocks is not None else [("h1", "Intro"), ("p", "Hello DOCX world.")]
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.core_properties.created = FIXED_DATE.replace(tzinfo=None)
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            document.add_heading(value, level=int(kind[1]))
        elif kind == "p":
            document.add_paragraph(value)
        elif kind == "table":
            rows, merges = (value["rows"], value.get("merge", [])) if isinstance(value, dict) else (value, [])
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = str(cell)
            for (r1, c1), (r2, c2) in merges:
                table.cell(r1, c1).merge(table.cell(r2, c2))
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    path = Path(path)
    document.save(str(path))
    return path


def make_pptx(path: str | Path, slides: list[dict[str, Any]] | None = None) -> Path:
    """``slides``: dicts with ``title``, ``bullets`` (list of str) and optional ``notes``."""
    from pptx import Presentation

    slides = slides if slides is not None else [{"title": "Welcome", "bullets": ["First point"]}]
    prs = Presentation()
    prs.core_properties.created = FIXED_DATE.replace(tzinfo=None)
    for spec in slides:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = spec.get("title", "")
        body = slide.placeholders[1].text_frame
        bullets = spec.get("bullets", [])
        if bullets:
            body.text = bullets[0]
            for bullet in bullets[1:]:
                body.add_paragraph().text = bullet
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    path = Path(path)
    prs.save(str(path))
    return path


def make_xlsx(path: str | Path, sheets: dict[str, list[list[Any]]] | None = None) -> Path:
    """``sheets``: sheet name -> rows (first row is the header)."""
    from openpyxl import Workbook

    sheets = sheets if sheets is not None else {"People": [["Name", "Dept"], ["Alice", "HR"]]}
    wb = Workbook()
    wb.remove(wb.active)
    wb.properties.created = FIXED_DATE.replace(tzinfo=None)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    path = Path(path)
    wb.save(str(path))
    return path


def make_text(path: str | Path, text: str, encoding: str = "utf-8", *, bom: bool = False) -> Path:
    """Text in ``encoding``; ``bom=True`` adds the BOM (utf-8 -> utf-8-sig, utf-16 -> LE with BOM)."""
    path = Path(path)
    if encoding.lower() in ("utf-8", "utf8") and bom:
        data = text.encode("utf-8-sig")
    elif encoding.lower() in ("utf-16", "utf-32"):
        data = text.encode(encoding)  # Python writes the BOM for these names
        if not bom:
            data = text.encode(encoding + "-le")
    else:
        data = text.encode(encoding)
    path.write_bytes(data)
    return path


def make_gbk_txt(path: str | Path, text: str | None = None) -> Path:
    text = text or "员工每年享有十五天带薪年假。报销单须在消费后三十天内提交给财务部门审核。"
    return make_text(path, text, "gbk")


def make_binary(path: str | Path, size: int = 2048) -> Path:
    path = Path(path)
    path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(size)))
    return path


def make_html(path: str | Path, body: str | None = None, *, title: str = "Test page") -> Path:
    body = body or "<h1>Intro</h1><p>Hello HTML.</p><h2>Details</h2><p>More text.</p>"
    html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>p {{color: red}}</style><script>var x = 'hidden';</script></head>"
            f"<body><nav>Home | About</nav>{body}<footer>Copyright footer</footer></body></html>")
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path


def make_eml(path: str | Path, *, subject: str = "Hello", body: str = "Plain body text.",
             html_body: str | None = None, attachments: dict[str, bytes] | None = None,
             sender: str = "it@example.com", to: str = "all@example.com") -> Path:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(FIXED_DATE)
    msg["Message-ID"] = "<fixture@example.com>"
    if html_body is not None:
        msg.set_content(html_body, subtype="html")
    else:
        msg.set_content(body)
    for name, data in (attachments or {}).items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    if msg.is_multipart():
        msg.set_boundary("==fixture-boundary==")
    path = Path(path)
    path.write_bytes(msg.as_bytes())
    return path


def make_zip_bomb_docx(path: str | Path, uncompressed_mb: int = 200) -> Path:
    """A .docx-shaped zip whose one member inflates to ``uncompressed_mb`` MB of zeros (~200 KB file)."""
    path = Path(path)
    chunk = b"\0" * 2**20
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            for _ in range(uncompressed_mb):
                fh.write(chunk)
    return path


def make_not_a_zip(path: str | Path) -> Path:
    path = Path(path)
    path.write_text("This is plain text pretending to be a Word document.\n", encoding="utf-8")
    return path


def make_big_file(path: str | Path, size: int) -> Path:
    """A sparse file of ``size`` bytes (instant, uses no disk)."""
    path = Path(path)
    with path.open("wb") as fh:
        fh.truncate(size)
    return path
