"""PDF loader: both text engines and the fallback between them, real typeset pages (the glue regression,
justified Chinese), page furniture, table rows, every bad input, and the re-parse of old documents."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import fixtures_files as F
import pytest

from kb_assistant.config import IngestConfig
from kb_assistant.errors import ConfigError, CorruptFile, EmptyFile, EncryptedFile
from kb_assistant.loaders import load_file, parser_version

FIXTURES = Path(__file__).parent / "fixtures"
ENGINES = ["auto", "pdfium", "pypdf"]
_NO_CJK_FONT = pytest.mark.skipif(F.cjk_font_path() is None,
                                  reason="no CJK font (apt-get install fonts-wqy-microhei)")


def _one_line(err: pytest.ExceptionInfo) -> None:
    msg = str(err.value)
    assert msg and "\n" not in msg and len(msg) < 200


def _glued(text: str) -> list[str]:
    return [w for w in text.split() if re.search(r"[A-Za-z]{31,}", w)]


# ---------------------------------------------------------------- round trips, each engine


@pytest.mark.parametrize("engine", ENGINES)
def test_pages_title_heading(tmp_path, engine):
    path = F.make_pdf(tmp_path / "h.pdf", ["The VPN port is 1194.", "Passwords need 14 characters."],
                      title="IT Handbook", headings=["VPN", "Passwords"])
    docs = load_file(path, pdf_engine=engine)
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert all(d.metadata["title"] == "IT Handbook" and d.metadata["file_type"] == "pdf" for d in docs)
    assert [d.metadata["heading"] for d in docs] == ["VPN", "Passwords"]
    assert "1194" in docs[0].text and "14 characters" in docs[1].text
    expected = "pypdf" if engine == "pypdf" else "pdfium"
    assert {d.metadata["pdf_engine"] for d in docs} == {expected}


@_NO_CJK_FONT
def test_chinese_text(tmp_path):
    text = "报销单须在消费后30天内提交。VPN 服务器地址是 vpn.northwind.example。"
    path = F.make_pdf(tmp_path / "zh.pdf", [text, "第二页：年假 15 天。"], headings=["报销流程", "年假"],
                      font=F.cjk_font_path())
    docs = load_file(path)
    assert docs[0].text == "报销流程\n" + text and docs[0].metadata["lang"] == "zh"
    assert [d.metadata["heading"] for d in docs] == ["报销流程", "年假"]


def test_without_outline_has_no_heading(tmp_path):
    docs = load_file(F.make_pdf(tmp_path / "plain.pdf", ["only text"]))
    assert docs[0].metadata["page"] == 1
    assert "heading" not in docs[0].metadata and "title" not in docs[0].metadata


# ---------------------------------------------------------------- real typeset pages


def test_glue_regression_on_a_real_justified_page():
    """maint-guide.en page 11: pypdf runs every word of the justified lines together; PDFium does not."""
    path = FIXTURES / "maint-guide.en.p11.pdf"
    old = load_file(path, pdf_engine="pypdf")[0].text
    assert "contentsofdebian-mentors@lists.debian.orgmailinglistarchive" in old  # the bug is reproduced
    text = load_file(path)[0].text
    assert not _glued(text)
    assert "contents of debian-mentors@lists.debian.org mailing list archive" in text
    assert "Making a small test package is a good way to learn details of packaging." in text
    # one text line per typeset line: the bullet items stay separate lines
    assert "\n• contents of info command for all pertinent commands\n" in text


def test_real_chinese_pages_justified_line_header_and_wrapped_sentences():
    """maint-guide.zh-cn pages 19-22: a letter-spaced footnote, a running header, wrapped sentences."""
    docs = load_file(FIXTURES / "maint-guide.zh-cn.p19-22.pdf")
    assert [d.metadata["page"] for d in docs] == [1, 2, 3, 4]
    text = "\n".join(d.text for d in docs)
    # PDFium gives "3对 于 单 份 源 码 生 成 多 个 二 进 制 包 的 情 况，dh_auto_install 将 临 时 ..."
    assert "3对于单份源码生成多个二进制包的情况，dh_auto_install 将临时目录设置为debian/tmp" in text
    assert "debian/tmp，而 dh_install 命令则将文件按照" in text
    assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff] [\u4e00-\u9fff]", text)
    # the running header "Debian 新维护者手册 14 / 57" is gone
    assert "Debian 新维护者手册" not in text and "/ 57" not in text
    # a sentence wrapped at the margin is one line again
    assert "所以请把它们按如下方式修改：" in docs[2].text
    assert all(d.metadata["lang"] == "zh" for d in docs)


# ---------------------------------------------------------------- furniture, tables


def test_running_header_footer_page_numbers_and_toc_are_dropped(tmp_path):
    toc = "Contents\n" + "\n".join(f"{i} Chapter {name} . . . . . . . . . . . . {i + 1}"
                                   for i, name in enumerate(["One", "Two", "Three"], start=1))
    bodies = ["The VPN port is 1194.", "Laptops are replaced every 4 years.", "Badges open doors 7-19h."]
    path = F.make_pdf(tmp_path / "handbook.pdf", [toc, *bodies], headings=[None, "One", "Two", "Three"],
                      header="ACME Handbook - Confidential", footer="Page {page} of {pages}")
    docs = load_file(path)
    text = "\n".join(d.text for d in docs)
    assert "Confidential" not in text and "Page " not in text and ". . ." not in text
    assert [d.text for d in docs if d.metadata["page"] > 1] == [
        "One\n" + bodies[0], "Two\n" + bodies[1], "Three\n" + bodies[2]]
    assert [d.metadata["heading"] for d in docs if d.metadata["page"] > 1] == ["One", "Two", "Three"]


def test_two_pages_keep_their_repeated_lines(tmp_path):
    """Too few pages to tell furniture from content: nothing is dropped."""
    path = F.make_pdf(tmp_path / "memo.pdf", ["Memo one.", "Memo two."], header="Internal memo")
    assert [d.text for d in load_file(path)] == ["Internal memo\nMemo one.", "Internal memo\nMemo two."]


def test_table_rows_stay_on_one_line(tmp_path):
    rows = [["Type", "Days", "Approver"], ["Wedding", "3", "HR"], ["Bereavement", "5", "Line manager"]]
    text = load_file(F.make_table_pdf(tmp_path / "leave.pdf", rows))[0].text
    lines = text.split("\n")
    assert "Type Days Approver" in lines and "Wedding 3 HR" in lines and "Bereavement 5 Line manager" in lines


# ---------------------------------------------------------------- engine fallback


def test_auto_falls_back_to_pypdf_when_pdfium_cannot_open(tmp_path):
    path = F.make_headerless_pdf(tmp_path / "noheader.pdf", "Recovered by the fallback engine.")
    docs = load_file(path)
    assert docs[0].text == "Recovered by the fallback engine." and docs[0].metadata["pdf_engine"] == "pypdf"
    with pytest.raises(CorruptFile, match="not a valid PDF") as err:
        load_file(path, pdf_engine="pdfium")
    _one_line(err)


def test_pdfium_reads_what_pypdf_cannot(tmp_path):
    path = F.make_pdf_without_eof(tmp_path / "noeof.pdf", "Read by PDFium alone.")
    assert load_file(path)[0].text == "Read by PDFium alone."
    with pytest.raises(CorruptFile, match="not a valid PDF"):
        load_file(path, pdf_engine="pypdf")


@pytest.mark.parametrize("engine", ENGINES)
def test_one_damaged_page_does_not_lose_the_others(tmp_path, engine):
    path = F.make_damaged_page_pdf(tmp_path / "damaged.pdf", ["First page survives.", "Second page lost."])
    docs = load_file(path, pdf_engine=engine)
    assert [(d.metadata["page"], d.text) for d in docs] == [(1, "First page survives.")]


def test_engine_setting_is_validated():
    assert IngestConfig().pdf_engine == "auto"
    with pytest.raises(ConfigError, match="pdf_engine must be one of 'auto', 'pdfium', 'pypdf'; got 'ocr'"):
        IngestConfig(pdf_engine="ocr")


def test_threads_share_pdfium_safely(tmp_path):
    path = F.make_pdf(tmp_path / "t.pdf", [f"Section {name} text." for name in "ABCDEF"])
    expected = [d.text for d in load_file(path)]
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append([d.text for d in load_file(path)]))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


# ---------------------------------------------------------------- bad input, each engine


@pytest.mark.parametrize("engine", ENGINES)
def test_corrupt(tmp_path, engine):
    with pytest.raises(CorruptFile, match="not a valid PDF") as err:
        load_file(F.make_corrupt_pdf(tmp_path / "broken.pdf"), pdf_engine=engine)
    _one_line(err)


@pytest.mark.parametrize("engine", ENGINES)
def test_encrypted_with_password(tmp_path, engine):
    with pytest.raises(EncryptedFile, match=r"^encrypted PDF: needs a password \(not supported\)$") as err:
        load_file(F.make_encrypted_pdf(tmp_path / "secret.pdf", user_password="s3cret"), pdf_engine=engine)
    _one_line(err)


@pytest.mark.parametrize("engine", ENGINES)
def test_encrypted_with_empty_user_password_loads(tmp_path, engine):
    docs = load_file(F.make_encrypted_pdf(tmp_path / "owner_only.pdf", ["Readable but restricted."],
                                          user_password=""), pdf_engine=engine)
    assert docs[0].text == "Readable but restricted." and docs[0].metadata["page"] == 1


def test_without_text_layer_and_no_ocr(tmp_path, monkeypatch):
    from kb_assistant.loaders import ocr

    monkeypatch.setattr(ocr, "_ENGINE", None)  # as if the ocr extra were not installed
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    reason = r"^no text layer; install kb-assistant\[ocr\] to read scanned pages$"
    with pytest.raises(EmptyFile, match=reason):
        load_file(F.make_no_text_pdf(tmp_path / "scan.pdf"))


def test_blank_pages_are_not_scanned_pages(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.add_page()
    pdf.output(str(tmp_path / "blank.pdf"))
    with pytest.raises(EmptyFile, match=r"^no text layer \(blank pages\)$"):
        load_file(tmp_path / "blank.pdf")


# ---------------------------------------------------------------- re-parse after a loader change


def test_parser_version_names_type_version_and_engine():
    assert parser_version("pdf") == "pdf/2/auto"
    assert parser_version("pdf", pdf_engine="pypdf") == "pdf/2/pypdf"
    assert parser_version("docx", pdf_engine="pypdf") == "docx/2"
    assert parser_version("json") == "json/1"


def test_reingest_reparses_pdfs_made_by_an_older_loader(kb_factory, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    F.make_pdf(docs / "h.pdf", ["The VPN port is 1194."])
    kb = kb_factory()
    kb.ingest(docs)
    (record,) = kb.docstore.documents()
    assert record.parser == "pdf/2/auto"
    assert kb.ingest(docs).unchanged  # same file, same parser: skipped
    kb.docstore.conn.execute("UPDATE documents SET parser = NULL")  # as stored before parser versions
    again = kb.ingest(docs)
    assert len(again.updated) == 1 and not again.unchanged
    assert kb.docstore.documents()[0].parser == "pdf/2/auto"
    kb.close()
    other = kb_factory(config={"ingest": {"pdf_engine": "pypdf"}})
    assert len(other.ingest(docs).updated) == 1  # another engine: parsed again


def test_docstore_without_parser_column_is_migrated(tmp_path):
    import sqlite3

    from kb_assistant.store.docstore import DocStore

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE documents (doc_id TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE,
            content_hash TEXT NOT NULL, mtime REAL NOT NULL, size INTEGER NOT NULL, file_type TEXT,
            status TEXT NOT NULL DEFAULT 'ok',
            n_chunks INTEGER NOT NULL DEFAULT 0, groups TEXT NOT NULL DEFAULT '[]',
            tags TEXT NOT NULL DEFAULT '[]', ingested_at REAL NOT NULL);
        INSERT INTO documents VALUES ('d1', '/x/a.pdf', 'h', 0, 1, 'pdf', 'ok', 1, '[]', '[]', 0);
    """)
    conn.commit()
    conn.close()
    store = DocStore(path)
    (record,) = store.documents()
    assert record.path == "/x/a.pdf" and record.parser is None
    store.close()
