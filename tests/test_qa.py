"""QA sets: the split / answer_keywords_zh fields, load_qa(split=), the two dev sets in
benchmarks/data/, and benchmarks/data/check_qa.py (frozen splits, PDF evidence per page)."""

from __future__ import annotations

import collections
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from fixtures_files import make_pdf

from kb_assistant.errors import ConfigError
from kb_assistant.evaluation.qa import SPLITS, QAItem, load_qa

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "benchmarks" / "data"
DEBIAN_QA, PDF_QA = DATA / "debian_qa.jsonl", DATA / "pdf_qa.jsonl"
CORPUS = REPO / "benchmarks" / ".corpus"

ITEM = {
    "id": "pdf-cross-001",
    "question": "Which search engine is the default in the browsers?",
    "lang": "en",
    "source": "manual.zh-cn.pdf",
    "evidence": "DuckDuckGo 被用为默认搜索提供者",
    "answer_keywords": ["DuckDuckGo"],
    "answer_keywords_zh": ["默认搜索"],
    "answer": "DuckDuckGo.",
    "answerable": True,
    "kind": "cross",
    "page": 97,
    "split": "tune",
}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _check_qa():
    spec = importlib.util.spec_from_file_location("check_qa", DATA / "check_qa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- schema and load_qa(split=) ------------------------------------------------------------------------


def test_split_page_and_zh_keywords_round_trip():
    item = QAItem.from_dict(ITEM)
    assert (item.split, item.page, item.answer_keywords_zh) == ("tune", 97, ["默认搜索"])
    assert item.extra == {} and item.to_dict() == ITEM
    assert QAItem.from_dict({k: v for k, v in ITEM.items() if k != "split"}).split is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": "train"}, "'split' must be one of tune, test (got 'train')"),
        ({"split": ""}, "'split' must be one of tune, test"),
        ({"answer_keywords_zh": "默认"}, "'answer_keywords_zh' must be a list of non-empty strings"),
        ({"answer_keywords_zh": ["", "x"]}, "'answer_keywords_zh' must be a list of non-empty strings"),
    ],
)
def test_bad_split_and_zh_keywords_name_the_line(tmp_path, change, message):
    path = _write(tmp_path / "qa.jsonl", [{**ITEM, "id": "a"}, {**ITEM, **change}])
    with pytest.raises(ConfigError, match="line 2: " + message.replace("(", r"\(").replace(")", r"\)")):
        load_qa(path)


def test_load_qa_filters_by_split(tmp_path):
    records = [{**ITEM, "id": f"q{i}", "split": SPLITS[i % 2]} for i in range(5)]
    path = _write(tmp_path / "qa.jsonl", records)
    assert [i.id for i in load_qa(path, split="tune")] == ["q0", "q2", "q4"]
    assert [i.id for i in load_qa(path, split="test")] == ["q1", "q3"]
    assert len(load_qa(path)) == 5
    with pytest.raises(ValueError, match="split must be one of tune, test"):
        load_qa(path, split="dev")
    unsplit = _write(tmp_path / "unsplit.jsonl", [{k: v for k, v in ITEM.items() if k != "split"}])
    with pytest.raises(ConfigError, match="no QA items with split 'test'"):
        load_qa(unsplit, split="test")


# --- the two dev sets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DEBIAN_QA, PDF_QA], ids=["debian_qa", "pdf_qa"])
def test_dev_sets_have_a_frozen_stratified_split(path, tmp_path):
    items = load_qa(path)
    tune, test = load_qa(path, split="tune"), load_qa(path, split="test")
    assert {i.id for i in tune} | {i.id for i in test} == {i.id for i in items}
    assert not {i.id for i in tune} & {i.id for i in test}
    for kind in ("en", "zh", "cross", "unanswerable"):
        n_tune = sum(i.kind == kind for i in tune)
        n_all = sum(i.kind == kind for i in items)
        assert 0.3 <= n_tune / n_all <= 0.5, (kind, n_tune, n_all)
    # the split is a pure function of the file: re-assigning it from scratch gives the same one
    unsplit = [{k: v for k, v in json.loads(line).items() if k != "split"}
               for line in path.read_text(encoding="utf-8").splitlines()]
    copy = _write(tmp_path / path.name, unsplit)
    _check_qa().assign_splits(copy)
    assert copy.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_pdf_qa_counts_pages_and_keywords():
    items = load_qa(PDF_QA)
    kinds = collections.Counter(i.kind for i in items)
    assert kinds["en"] >= 45 and kinds["zh"] >= 30 and kinds["cross"] >= 20 and kinds["unanswerable"] >= 30
    assert len(items) >= 125
    assert {i.lang for i in items if not i.answerable} == {"en", "zh"}
    answerable = [i for i in items if i.answerable]
    assert all(i.page and i.source.endswith(".pdf") and i.answer_keywords for i in answerable)
    assert all(i.source == "debian-edu-manual.zh-cn.pdf" and i.answer_keywords_zh
               for i in items if i.kind == "cross")
    assert all(i.absent_terms for i in items if not i.answerable)
    # questions spread over each document, not only its first pages
    for source in {i.source for i in answerable}:
        pages = sorted(i.page for i in answerable if i.source == source)
        assert pages[-1] - pages[0] >= 40, (source, pages)
    assert not {i.id for i in items} & {i.id for i in load_qa(DEBIAN_QA)}


# --- check_qa.py -----------------------------------------------------------------------------------------


def test_assign_splits_is_deterministic_stratified_and_frozen(tmp_path):
    check_qa = _check_qa()
    records = [{**ITEM, "id": f"en-{i:03d}", "kind": "en", "lang": "en"} for i in range(10)]
    for record in records:
        record.pop("split")
    records[0]["split"] = "test"  # an existing split is never changed
    path = _write(tmp_path / "qa.jsonl", records)
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert check_qa.assign_splits(path) == 9
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == first_line
    splits = [json.loads(line)["split"] for line in lines]
    assert splits.count("tune") == 4 and splits[0] == "test"
    assert check_qa.assign_splits(path) == 0
    # the same records in another order get the same splits (sha256 of the id decides)
    again = _write(tmp_path / "again.jsonl", [json.loads(line) for line in reversed(lines)])
    assert check_qa.split_problems(load_qa(again)) == []
    skewed = [QAItem.from_dict({**json.loads(line), "split": "tune"}) for line in lines]
    assert check_qa.split_problems(skewed) == [
        "kind 'en': 10 of 10 items are in the tune split (want 30%-50%)"]
    bare = [QAItem.from_dict({k: v for k, v in json.loads(line).items() if k != "split"}) for line in lines]
    assert check_qa.split_problems(bare)[0].startswith("10 item(s) without a 'split'")


def test_check_qa_on_a_tiny_pdf_corpus(tmp_path):
    pytest.importorskip("fpdf")
    pytest.importorskip("pypdfium2")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    check_qa = _check_qa()
    root = tmp_path / "corpus" / "pdf"
    root.mkdir(parents=True)
    make_pdf(root / "maint-guide.en.pdf", [
        "Chapter one explains the build setup on a fresh machine.",
        "The watch file tells uscan where new upstream releases are published.",
        "Lintian reports a W: line for a warning about packaging.",
    ])
    base = {"lang": "en", "source": "maint-guide.en.pdf", "answer_keywords": ["uscan"],
            "answer": "Use uscan.", "answerable": True, "kind": "en", "split": "test"}
    ok = {**base, "id": "ok", "question": "How are new releases found?", "page": 2,
          "evidence": "the watch file tells USCAN where new upstream releases"}
    wrong_page = {**ok, "id": "wrong-page", "page": 3}
    no_page = {k: v for k, v in ok.items() if k != "page"} | {"id": "no-page"}
    absent = {"id": "un", "question": "How do I use Kubernetes?", "lang": "en", "answerable": False,
              "kind": "unanswerable", "absent_terms": ["Kubernetes", "uscan"], "split": "tune"}
    qa = _write(tmp_path / "pdf_qa.jsonl", [ok, wrong_page, no_page, absent])
    corpus, why = check_qa.open_corpus(qa, tmp_path / "corpus")
    assert why == "" and isinstance(corpus, check_qa.PdfCorpus)
    failures, counts = check_qa.check(qa, corpus)
    text = "\n".join(failures)
    assert "ok:" not in text
    assert ("wrong-page: evidence not found (it is on page 2) on page 3 of maint-guide.en.pdf (pdftotext)"
            in text)
    assert "wrong-page: evidence not found on page 3 of maint-guide.en.pdf (pypdfium2)" in text
    assert "no-page: needs a 'page' between 1 and 3 (got None)" in text
    assert "un: absent term 'uscan' does occur" in text and "'Kubernetes'" not in text
    assert "only 3 'en' items (want >= 45)" in text
    assert check_qa.main([str(qa), "--corpus", str(tmp_path / "corpus")]) == 1
    assert check_qa.main([str(qa), "--corpus", str(tmp_path / "nowhere")]) == 2


@pytest.mark.skipif(not (CORPUS / "pdf" / "debian-edu-manual.zh-cn.pdf").is_file(),
                    reason="run scripts/get_pdf_corpus.sh first")
def test_pdf_qa_evidence_against_the_real_pdfs(capsys):
    pytest.importorskip("pypdfium2")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    assert _check_qa().main([str(PDF_QA), "--corpus", str(CORPUS)]) == 0
    assert "all checks passed" in capsys.readouterr().out


# --- kb eval --split -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kb_eval_retrieval_on_one_split(tmp_path, capsys, write):
    from kb_assistant.cli import main

    write(tmp_path / "docs" / "vpn.md", "# VPN\n\nThe VPN server listens on port 1194.\n")
    write(tmp_path / "docs" / "leave.txt", "Annual leave is 25 days per year.")
    kb_dir = str(tmp_path / "kb")
    assert main(["ingest", str(tmp_path / "docs"), "--kb", kb_dir, "--json"]) == 0
    capsys.readouterr()
    common = {"lang": "en", "answer_keywords": ["x"], "answerable": True, "kind": "en"}
    qa = _write(tmp_path / "qa.jsonl", [
        {**common, "id": "a", "question": "Which port does the VPN use?", "source": "vpn.md",
         "evidence": "listens on port 1194", "split": "tune"},
        {**common, "id": "b", "question": "How many days of annual leave?", "source": "leave.txt",
         "evidence": "Annual leave is 25 days", "split": "test"},
        {**common, "id": "c", "question": "What is the VPN port number?", "source": "vpn.md",
         "evidence": "port 1194", "split": "test"},
    ])
    assert main(["eval", "retrieval", "--kb", kb_dir, "--qa", str(qa), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(r["id"] for r in report["results"]) == ["b", "c"]
    assert report["overall"]["recall@5"] == 1.0
    with pytest.raises(SystemExit):
        main(["eval", "retrieval", "--kb", kb_dir, "--qa", str(qa), "--split", "dev"])
