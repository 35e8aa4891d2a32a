"""Loaders: every format round-trips a tiny real file; every bad input fails with a typed one-line error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import fixtures_files as F
import pytest

from kb_assistant.errors import (
    CorruptFile,
    EmptyFile,
    FileTooLarge,
    LoaderError,
    UnsupportedFormat,
)
from kb_assistant.loaders import detect_lang, load_file, normalize_text, supported_suffixes

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_KB = ROOT / "examples" / "sample_kb"
SAMPLE_QA = ROOT / "examples" / "sample_qa.jsonl"


def _text(docs) -> str:
    return "\n".join(d.text for d in docs)


def _assert_common_meta(docs, file_type: str) -> None:
    assert docs
    for doc in docs:
        assert doc.text.strip()
        assert doc.metadata["file_type"] == file_type
        assert doc.metadata["lang"] in ("en", "zh")


def _assert_one_line(err: pytest.ExceptionInfo) -> None:
    msg = str(err.value)
    assert msg and "\n" not in msg and len(msg) < 200


# ---------------------------------------------------------------- round trips


def test_docx_sections_and_tables(tmp_path):
    path = F.make_docx(tmp_path / "hr.docx", [
        ("h1", "Annual Leave"), ("p", "Employees get 25 days."),
        ("table", [["Type", "Days"], ["Wedding", "3"]]),
        ("h2", "Parental Leave"), ("p", "16 weeks at full pay."),
    ], title="HR Policy")
    docs = load_file(path)
    _assert_common_meta(docs, "docx")
    assert [d.metadata["heading"] for d in docs] == ["Annual Leave", "Parental Leave"]
    assert "Type: Wedding; Days: 3" in docs[0].text
    assert docs[0].metadata["title"] == "HR Policy"


def test_docx_table_rows_with_merged_cells(tmp_path):
    table = {"rows": [["Name", "Contact", ""], ["Alice", "ext. 101", "alice@example.com"],
                      ["Contractors", "", ""], ["Bob", "ext. 102", "bob@example.com"]],
             "merge": [((0, 1), (0, 2)), ((2, 0), (2, 2))]}
    dept = {"rows": [["Dept", "Person"], ["HR", "Ann"], ["", "Bo"]], "merge": [((1, 0), (2, 0))]}
    text = load_file(F.make_docx(tmp_path / "t.docx", [("table", table), ("table", dept)]))[0].text
    assert text.split("\n") == [
        "Name: Alice; Contact: ext. 101; Contact: alice@example.com",  # header merged over two columns
        "Contractors",  # one cell across the row: a label, not a value of "Name"
        "Name: Bob; Contact: ext. 102; Contact: bob@example.com",
        "",
        "Dept: HR; Person: Ann",
        "Dept: HR; Person: Bo",  # merged down: every row stands alone
    ]


def test_pptx_slides_titles_notes(tmp_path):
    path = F.make_pptx(tmp_path / "deck.pptx", [
        {"title": "Intro", "bullets": ["Robots for warehouses"]},
        {"title": "NW-200", "bullets": ["Payload 12 kg", "8 hours battery"], "notes": "Launched 2023"},
    ])
    docs = load_file(path)
    _assert_common_meta(docs, "pptx")
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert docs[1].metadata["title"] == "NW-200"
    assert "Payload 12 kg" in docs[1].text and "Notes: Launched 2023" in docs[1].text


def test_xlsx_rows_with_header(tmp_path):
    rows = [["Name", "Dept", "Start"], ["Alice", "HR", 2019], ["Bob", None, 2.0]]
    docs = load_file(F.make_xlsx(tmp_path / "people.xlsx", {"Staff": rows, "Empty": []}))
    _assert_common_meta(docs, "xlsx")
    assert len(docs) == 1 and docs[0].metadata["section"] == "Staff"
    assert docs[0].text.splitlines() == ["Name: Alice; Dept: HR; Start: 2019", "Name: Bob; Start: 2"]


def test_xlsx_large_sheet_splits_into_blocks(tmp_path):
    rows = [["N", "Square"]] + [[i, i * i] for i in range(120)]
    docs = load_file(F.make_xlsx(tmp_path / "big.xlsx", {"Numbers": rows}))
    assert len(docs) == 3
    assert docs[0].metadata["rows"] == "2-51" and docs[-1].metadata["rows"] == "102-121"


def test_csv_semicolon_and_encoding(tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes("Name;City\nZoë;Köln\n李雷;上海\n".encode())
    docs = load_file(path)
    _assert_common_meta(docs, "csv")
    assert docs[0].text.splitlines() == ["Name: Zoë; City: Köln", "Name: 李雷; City: 上海"]


def test_html_sections_and_dropped_chrome(tmp_path):
    docs = load_file(F.make_html(tmp_path / "faq.html", title="FAQ"))
    _assert_common_meta(docs, "html")
    assert [d.metadata["heading"] for d in docs] == ["Intro", "Details"]
    assert all(d.metadata["title"] == "FAQ" for d in docs)
    text = _text(docs)
    assert "Hello HTML." in text
    for hidden in ("hidden", "Home | About", "Copyright footer", "color: red"):
        assert hidden not in text


def test_markdown_split_by_headings_ignores_code_fences(tmp_path):
    path = tmp_path / "faq.md"
    path.write_text("# 常见问题\n\n简介。\n\n## 打印机设置\n\n地址是 print.example\n\n"
                    "```\n# not a heading\n```\n\n## Wi-Fi\n\n访客密码每周更换。\n", encoding="utf-8")
    docs = load_file(path)
    _assert_common_meta(docs, "md")
    assert [d.metadata["heading"] for d in docs] == ["常见问题", "打印机设置", "Wi-Fi"]
    assert "# not a heading" in docs[1].text
    assert all(d.metadata["lang"] == "zh" for d in docs)


def test_txt_utf8(tmp_path):
    docs = load_file(F.make_text(tmp_path / "a.txt", "Hello\r\n\r\n\r\n\r\nworld\x07!"))
    _assert_common_meta(docs, "txt")
    assert docs[0].text == "Hello\n\nworld!"
    assert docs[0].metadata["encoding"] == "utf-8"


def test_json_records_flattened(tmp_path):
    path = tmp_path / "items.json"
    records = [{"name": "Alice", "tags": ["a", "b"], "org": {"dept": "HR"}}, {"name": "Bob"}]
    path.write_text(json.dumps(records))
    docs = load_file(path)
    _assert_common_meta(docs, "json")
    assert docs[0].text.splitlines() == ["name: Alice", "tags: a, b", "org.dept: HR"]
    assert [d.metadata["record"] for d in docs] == [1, 2]


def test_jsonl_skips_bad_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"q": "vpn port?", "a": 1194}\nnot json\n{"q": "leave", "a": 25}\n')
    docs = load_file(path)
    _assert_common_meta(docs, "json")
    assert [d.text for d in docs] == ["q: vpn port?\na: 1194", "q: leave\na: 25"]


def test_json_invalid_is_corrupt(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"a": 1,, }')
    with pytest.raises(CorruptFile, match="not valid JSON") as err:
        load_file(path)
    _assert_one_line(err)


def test_eml_plain_with_attachments(tmp_path):
    path = F.make_eml(tmp_path / "move.eml", subject="Office move", body="We move on 12 May.",
                      attachments={"floor plan.pdf": b"%PDF-1.4"})
    docs = load_file(path)
    _assert_common_meta(docs, "eml")
    doc = docs[0]
    assert doc.metadata["title"] == "Office move"
    assert "From: it@example.com" in doc.text and "Date: Mon, 15 Jan 2024" in doc.text
    assert "We move on 12 May." in doc.text
    assert "Attachments: floor plan.pdf" in doc.text


def test_eml_html_body_is_stripped(tmp_path):
    path = F.make_eml(tmp_path / "h.eml", html_body="<html><body><p>Hi <b>all</b></p><script>x()</script>")
    text = load_file(path)[0].text
    assert "Hi all" in text and "<b>" not in text and "x()" not in text


# ---------------------------------------------------------------- encodings


def test_gbk_text(tmp_path):
    docs = load_file(F.make_gbk_txt(tmp_path / "hr.txt"))
    assert "报销单须在消费后三十天内提交" in docs[0].text
    assert docs[0].metadata["encoding"] in ("gbk", "gb18030") and docs[0].metadata["lang"] == "zh"


@pytest.mark.parametrize("encoding,bom", [("utf-16", True), ("utf-16", False), ("utf-8", True),
                                          ("utf-32", True)])
def test_unicode_encodings_with_and_without_bom(tmp_path, encoding, bom):
    text = "Password policy 密码策略: 14 characters / 14 个字符"
    docs = load_file(F.make_text(tmp_path / "u.txt", text, encoding, bom=bom))
    assert docs[0].text == text
    assert "\ufeff" not in docs[0].text


def test_big5_text(tmp_path):
    text = "員工每年享有十五天帶薪年假。報銷單須在消費後三十天內提交給財務部門。"
    docs = load_file(F.make_text(tmp_path / "tw.txt", text, "big5"))
    assert docs[0].text == text and docs[0].metadata["encoding"] == "big5"


def test_gbk_html_without_charset_and_gbk_csv(tmp_path):
    html = tmp_path / "zh.html"
    html.write_bytes("<html><body><h2>报销流程</h2><p>报销单须在消费后30天内提交。</p></body></html>".encode("gbk"))
    docs = load_file(html)
    assert docs[0].metadata["heading"] == "报销流程" and "30天内提交" in docs[0].text
    csv_path = tmp_path / "zh.csv"
    csv_path.write_bytes("姓名,部门\n张伟,人事部\n".encode("gbk"))
    assert load_file(csv_path)[0].text == "姓名: 张伟; 部门: 人事部"


def test_korean_text(tmp_path):
    text = "안녕하세요. 회사 휴가 정책입니다."
    docs = load_file(F.make_text(tmp_path / "ko.txt", text, "euc_kr"))
    assert docs[0].text == text and docs[0].metadata["encoding"] == "euc_kr"


def test_shift_jis_and_latin1_text(tmp_path):
    jp = "従業員は年間十五日の有給休暇を取得できます。"
    assert load_file(F.make_text(tmp_path / "jp.txt", jp, "shift_jis"))[0].text == jp
    fr = "Café crème, naïve résumé à Paris."
    assert load_file(F.make_text(tmp_path / "fr.txt", fr, "latin-1"))[0].text == fr


def test_binary_named_txt(tmp_path):
    with pytest.raises(CorruptFile, match=r"binary content in a \.txt file") as err:
        load_file(F.make_binary(tmp_path / "image.txt"))
    _assert_one_line(err)


# ---------------------------------------------------------------- bad input


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    with pytest.raises(EmptyFile, match=r"empty file \(0 bytes\)"):
        load_file(path)


def test_whitespace_only_file_is_empty(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n\t \n")
    with pytest.raises(EmptyFile):
        load_file(path)


def test_docx_zip_bomb(tmp_path):
    path = F.make_zip_bomb_docx(tmp_path / "bomb.docx", uncompressed_mb=200)
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(CorruptFile, match=r"DOCX expands to more than \d+ MB \(zip bomb\?\)") as err:
        load_file(path)
    _assert_one_line(err)


def test_docx_not_a_zip(tmp_path):
    with pytest.raises(CorruptFile, match=r"not a valid DOCX \(not a zip archive\)"):
        load_file(F.make_not_a_zip(tmp_path / "letter.docx"))


def test_pptx_and_xlsx_not_a_zip(tmp_path):
    with pytest.raises(CorruptFile, match=r"not a valid PPTX \(not a zip archive\)"):
        load_file(F.make_not_a_zip(tmp_path / "deck.pptx"))
    with pytest.raises(CorruptFile, match=r"not a valid XLSX \(not a zip archive\)"):
        load_file(F.make_not_a_zip(tmp_path / "sheet.xlsx"))


def test_file_over_size_limit(tmp_path):
    path = F.make_big_file(tmp_path / "huge.txt", int(62.1 * 2**20))
    with pytest.raises(FileTooLarge, match=r"file larger than the 50 MB limit \(62\.1 MB\)"):
        load_file(path)
    small = F.make_text(tmp_path / "small.txt", "x" * 2000)
    with pytest.raises(FileTooLarge, match="limit"):
        load_file(small, max_bytes=1000)


def test_unsupported_and_legacy_formats(tmp_path):
    path = tmp_path / "photo.xyz"
    path.write_bytes(b"data")
    with pytest.raises(UnsupportedFormat, match="unsupported file type '.xyz'"):
        load_file(path)
    legacy = tmp_path / "old.doc"
    legacy.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(UnsupportedFormat, match=r"legacy Office format \(\.doc\); save it as \.docx"):
        load_file(legacy)


def test_missing_file(tmp_path):
    with pytest.raises(LoaderError, match="file not found"):
        load_file(tmp_path / "nope.pdf")


def test_content_sniffing_beats_wrong_suffix(tmp_path):
    pdf = F.make_pdf(tmp_path / "real.pdf", ["sniffed pdf text"])
    wrong = tmp_path / "report.docx"
    wrong.write_bytes(pdf.read_bytes())
    docs = load_file(wrong)
    assert docs[0].metadata["file_type"] == "pdf" and "sniffed pdf text" in docs[0].text
    docx = F.make_docx(tmp_path / "real.docx", [("p", "sniffed docx text")])
    renamed = tmp_path / "renamed.pptx"
    renamed.write_bytes(docx.read_bytes())
    assert load_file(renamed)[0].metadata["file_type"] == "docx"


def test_path_with_spaces_and_chinese(tmp_path):
    folder = tmp_path / "人事 政策 folder"
    folder.mkdir()
    path = F.make_pdf(folder / "员工 手册 v2.pdf", ["Handbook text"])
    assert load_file(str(path))[0].text == "Handbook text"


# ---------------------------------------------------------------- helpers


def test_detect_lang():
    assert detect_lang("报销单须在消费后30天内提交") == "zh"
    assert detect_lang("The VPN server is vpn.northwind.example") == "en"
    assert detect_lang("VPN 服务器地址是 vpn.northwind.example，端口 1194") == "zh"
    assert detect_lang("1234 !!") == "en"


def test_normalize_text():
    assert normalize_text("a\u00a0\u00a0b \t c\n\n\n\n d\x00e\r\n") == "a b c\n\nde"
    assert normalize_text("Cafe\u0301") == "Café"
    assert normalize_text("全角，标点。") == "全角，标点。"


def test_supported_suffixes():
    assert {".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".html", ".md", ".txt", ".json", ".jsonl",
            ".eml"} <= supported_suffixes()


def test_import_does_not_load_parsers():
    code = ("import sys, kb_assistant.loaders; "
            "print([m for m in ('pypdf', 'pypdfium2', 'rapidocr_onnxruntime', 'docx', 'pptx', 'openpyxl', "
            "'bs4', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- sample knowledge base


def test_sample_kb_loads_every_file():
    files = sorted(p for p in SAMPLE_KB.iterdir() if p.is_file())
    assert {p.suffix for p in files} >= {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".md", ".txt", ".eml"}
    langs = set()
    for path in files:
        docs = load_file(path)
        langs |= {d.metadata["lang"] for d in docs}
        assert sum(len(d.text) for d in docs) > 500, path.name
    assert langs == {"en", "zh"}
    assert load_file(SAMPLE_KB / "hr_policy_zh.txt")[0].metadata["encoding"] == "gbk"
    assert len(load_file(SAMPLE_KB / "it_handbook.pdf")) >= 3


def test_sample_qa_evidence_is_in_extracted_text():
    squash = re.compile(r"\s+")
    items = [json.loads(line) for line in SAMPLE_QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    answerable = [i for i in items if i["answerable"]]
    assert len(answerable) >= 20 and len(items) - len(answerable) >= 5
    assert {i["lang"] for i in answerable} == {"en", "zh"}
    cache: dict[str, list] = {}
    for item in answerable:
        docs = cache.setdefault(item["source"], load_file(SAMPLE_KB / item["source"]))
        if item["page"] is not None:
            docs = [d for d in docs if d.metadata.get("page") == item["page"]]
        haystack = squash.sub("", "".join(d.text for d in docs))
        assert squash.sub("", item["evidence"]) in haystack, item["question"]
        evidence = squash.sub("", item["evidence"]).lower()
        for keyword in item["answer_keywords"]:
            assert squash.sub("", keyword).lower() in evidence, (item["question"], keyword)
