"""OCR of scanned PDF pages (the ``ocr`` extra): image-only pages rendered from known en + zh text are read,
marked ``ocr``, cited by page and found by search; without the extra the reason says what to install."""

from __future__ import annotations

import importlib.util
import logging
import sys

import fixtures_files as F
import pytest

from kb_assistant.errors import EmptyFile
from kb_assistant.loaders import load_file, ocr

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("rapidocr_onnxruntime") is None,
                       reason="the ocr extra is not installed (pip install -e '.[ocr]')"),
    pytest.mark.skipif(F.cjk_font_path() is None, reason="no CJK font (apt-get install fonts-wqy-microhei)"),
]

SCANNED = "Expense reports are due within 30 days.\n报销单须在消费后三十天内提交。\nThe VPN port is 1194."


@pytest.fixture(scope="module")
def mixed_pdf(tmp_path_factory):
    """Page 1 has a text layer; page 2 is a scan of known English and Chinese lines."""
    from pypdf import PdfReader, PdfWriter

    tmp = tmp_path_factory.mktemp("ocr")
    text = F.make_pdf(tmp / "text.pdf", ["Travel policy: book trains for trips under 500 km."])
    scan = F.make_image_pdf(tmp / "scan.pdf", [SCANNED], font=F.cjk_font_path(), page_format=(105, 148))
    writer = PdfWriter()
    for part in (text, scan):
        for page in PdfReader(str(part)).pages:
            writer.add_page(page)
    path = tmp / "mixed.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def test_scanned_page_is_read_and_marked(mixed_pdf):
    docs = load_file(mixed_pdf)
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert "ocr" not in docs[0].metadata and docs[0].metadata["pdf_engine"] == "pdfium"
    scanned = docs[1]
    assert scanned.metadata["ocr"] is True and scanned.metadata["pdf_engine"] == "ocr"
    lines = scanned.text.split("\n")
    assert lines[0] == "Expense reports are due within 30 days."
    assert lines[1] == "报销单须在消费后三十天内提交。"
    assert "1194" in lines[2]


def test_without_the_extra_the_text_page_still_loads(mixed_pdf, monkeypatch, caplog):
    monkeypatch.setattr(ocr, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    with caplog.at_level(logging.WARNING, logger="kb_assistant.loaders.pdf_loader"):
        docs = load_file(mixed_pdf)
    assert [d.metadata["page"] for d in docs] == [1]
    assert "1 page(s) without a text layer skipped; install kb-assistant[ocr]" in caplog.text


@pytest.mark.slow  # ~30 s alone (the embedder loads), a few seconds in a suite
def test_image_only_pdf_ingests_and_is_searchable(kb_factory, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    F.make_image_pdf(docs / "scanned memo.pdf", [SCANNED], font=F.cjk_font_path(), page_format=(105, 148))
    kb = kb_factory()
    report = kb.ingest(docs)
    assert len(report.added) == 1 and not report.failed
    hits = kb.search("When are expense reports due?", k=1)
    assert hits[0].source.endswith("scanned memo.pdf") and hits[0].page == 1 and "30 days" in hits[0].text
    assert "报销单" in kb.search("报销单什么时候提交", k=1)[0].text


def test_a_drawing_without_text_gives_the_ocr_reason(tmp_path):
    with pytest.raises(EmptyFile, match=r"^no text layer, and OCR found no text on 1 page\(s\)$"):
        load_file(F.make_no_text_pdf(tmp_path / "drawing.pdf", page_format=(105, 148)))


def test_lines_are_grouped_by_position():
    # two boxes on one visual line (a table row), one below: (box corners, text, score)
    def box(x0, y0, x1, y1):
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    boxes = [(box(300, 12, 360, 30), "3", 0.9), (box(10, 10, 120, 32), "Wedding", 0.9),
             (box(10, 50, 150, 70), "Bereavement 5", 0.9)]
    assert ocr.group_lines(boxes) == ["Wedding 3", "Bereavement 5"]
