"""Tests for kb_assistant.evaluation (QA loader, retrieval metrics, gate threshold) and check_qa.py."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kb_assistant.errors import ConfigError
from kb_assistant.evaluation import (
    QAItem,
    best_threshold,
    evaluate_retrieval,
    first_relevant_rank,
    hit_matches,
    load_qa,
    parallel_page_matches,
    percentile,
    retrieval_metrics,
)
from kb_assistant.types import Hit

REPO = Path(__file__).resolve().parent.parent
QA_FILE = REPO / "benchmarks" / "data" / "debian_qa.jsonl"
CORPUS = REPO / "benchmarks" / ".corpus"


def hit(text: str, source: str = "/kb/docs/other.html", score: float = 0.5, page: int | None = None) -> Hit:
    return Hit(text=text, score=score, source=source, page=page, chunk_id=f"c-{abs(hash(text)) % 10_000}")


def item(**kw) -> QAItem:
    base = dict(
        id="en-001",
        question="Where are crontabs stored?",
        lang="en",
        answerable=True,
        kind="en",
        source="en-US/sect.cron.html",
        evidence="stored in the /var/spool/cron/crontabs/ user file",
        answer_keywords=["/var/spool/cron/crontabs/"],
    )
    base.update(kw)
    return QAItem(**base)


def unanswerable(id_: str = "un-001", lang: str = "en") -> QAItem:
    question = "How do I tune Kubernetes?" if lang == "en" else "如何调优 Kubernetes？"
    return QAItem(id=id_, question=question, lang=lang, answerable=False, kind="unanswerable")


# --- hit_matches / first_relevant_rank -------------------------------------------------------------


def test_hit_matches_evidence_ignores_whitespace_and_case():
    it = item()
    text = "Its content is STORED in the\n /var/spool/cron/crontabs/   user\tfile (see crontab -e)."
    assert hit_matches(hit(text), it)
    assert hit_matches(hit(text), it, mode="evidence")
    assert not hit_matches(hit(text), it, mode="source")
    assert not hit_matches(hit("cron runs jobs"), it)


def test_the_same_page_of_the_other_language_book_is_a_parallel_page_not_a_match():
    it = item(kind="cross", source="zh-CN/sect.ldap-directory.html", evidence="LDIF 文件")
    twin = hit("An LDIF file is a portable text file", source="/kb/corpus/en-US/sect.ldap-directory.html")
    assert not hit_matches(twin, it)  # the strict metric never counts it
    assert parallel_page_matches(twin, it)
    assert not parallel_page_matches(hit("x", source="/kb/corpus/zh-CN/sect.ldap-directory.html"), it)
    assert not parallel_page_matches(hit("x", source="/kb/corpus/en-US/sect.apt-file.html"), it)
    assert not parallel_page_matches(hit("x", source="sect.ldap-directory.html"), it)
    # paged sources and bare file names have no parallel page
    assert not parallel_page_matches(hit("x", source="/p/en/guide.pdf", page=3),
                                     item(source="zh/guide.pdf", page=3))
    assert not parallel_page_matches(hit("x", source="/p/en/guide.pdf"), item(source="guide.pdf"))
    assert not parallel_page_matches(twin, unanswerable())


def test_hit_matches_cjk_evidence_with_inline_spaces():
    it = item(
        lang="zh", kind="zh", source="zh-CN/x.html", evidence="把哈希编码后的密码保存在 /etc/shadow 文件内"
    )
    assert hit_matches(hit("用户清单保存在 /etc/passwd，把 哈希编码后的密码 保存在/etc/shadow 文件内。"), it)


def test_hit_matches_source_suffix_and_page():
    it = item()
    assert hit_matches(hit("unrelated", source="/data/corpus/en-US/sect.cron.html"), it)
    assert hit_matches(hit("unrelated", source="en-US/sect.cron.html"), it)
    assert hit_matches(hit("unrelated", source="C:\\corpus\\en-US\\sect.cron.html"), it)
    # the same file name in the other language's book must not count
    assert not hit_matches(hit("unrelated", source="/data/corpus/zh-CN/sect.cron.html"), it)
    assert not hit_matches(hit("unrelated", source="sect.cron.html"), it)
    assert not hit_matches(hit("unrelated", source="/data/xen-US/sect.cron.html"), it)
    paged = item(page=3)
    assert hit_matches(hit("x", source="/c/en-US/sect.cron.html", page=3), paged)
    assert not hit_matches(hit("x", source="/c/en-US/sect.cron.html", page=4), paged)
    assert not hit_matches(hit("x", source="/c/en-US/sect.cron.html", page=4), paged, mode="source")


def test_hit_matches_paged_item_evidence_anywhere_source_only_on_its_page():
    # in a 100-page PDF only the labelled page is relevant by source; the evidence counts on any page
    paged = item(source="developers-reference.pdf", page=58, evidence="Add XS-Autobuild: yes into the header")
    pdf = "/kb/developers-reference.pdf"
    elsewhere = hit("add XS-Autobuild:  yes into the HEADER part", source=pdf, page=12)
    assert hit_matches(elsewhere, paged) and hit_matches(elsewhere, paged, mode="evidence")
    assert not hit_matches(elsewhere, paged, mode="source")
    assert not hit_matches(hit("non-free packages", source=pdf, page=57), paged)
    assert not hit_matches(hit("non-free packages", source=pdf), paged)
    assert hit_matches(hit("non-free packages", source=pdf, page=58), paged)


def test_hit_matches_unanswerable_and_bad_mode():
    assert not hit_matches(hit("anything"), unanswerable())
    with pytest.raises(ValueError, match="mode must be one of"):
        hit_matches(hit("x"), item(), mode="fuzzy")


def test_first_relevant_rank():
    it = item()
    hits = [hit("a"), hit("b"), hit("it is stored in the /var/spool/cron/crontabs/ user file"), hit("d")]
    assert first_relevant_rank(hits, it) == 3
    assert first_relevant_rank(hits, it, k=2) is None
    assert first_relevant_rank([], it) is None


# --- retrieval_metrics / percentile ---------------------------------------------------------------


def test_retrieval_metrics_by_hand():
    m = retrieval_metrics([1, 3, None, 12])
    assert m["n"] == 4
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)
    # first-hit nDCG: 1/log2(1+rank); rank 3 -> 0.5
    assert m["ndcg@10"] == pytest.approx((1 + 0.5) / 4)


def test_retrieval_metrics_perfect_empty_and_invalid():
    m = retrieval_metrics([1, 1], ks=(1, 3))
    assert m == {"n": 2, "recall@1": 1.0, "recall@3": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0}
    empty = retrieval_metrics([])
    assert empty["n"] == 0 and empty["recall@1"] is None and empty["mrr@10"] is None
    with pytest.raises(ValueError):
        retrieval_metrics([0])
    with pytest.raises(ValueError):
        retrieval_metrics([1], ks=(0,))


def test_percentile():
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4], 0) == 1
    assert percentile([1, 2, 3, 4], 100) == 4
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


# --- best_threshold -------------------------------------------------------------------------------


def test_best_threshold_separable():
    t, stats = best_threshold([0.8, 0.9, 0.85], [0.1, 0.5, 0.3])
    assert t == pytest.approx(0.65)  # midpoint of the gap: largest margin
    assert stats["balanced_accuracy"] == 1.0
    assert stats["unknown_recall"] == 1.0 and stats["answer_recall"] == 1.0
    assert stats["unknown_f1"] == 1.0
    assert stats["n_answerable"] == 3 and stats["n_unanswerable"] == 3


def test_best_threshold_overlapping_tie_prefers_refusing():
    # t=0.35 and t=0.55 both give balanced accuracy 0.875; the tie goes to higher unknown recall.
    t, stats = best_threshold([0.9, 0.8, 0.6, 0.4], [0.5, 0.3, 0.2, 0.1], target_unknown_recall=0.0)
    assert t == pytest.approx(0.55)
    assert stats["unknown_recall"] == 1.0
    assert stats["answer_recall"] == pytest.approx(0.75)
    assert stats["balanced_accuracy"] == pytest.approx(0.875)
    assert stats["unknown_precision"] == pytest.approx(0.8)


def test_best_threshold_target_constrains_choice():
    pos, neg = [0.9, 0.8, 0.7, 0.6], [0.75, 0.3, 0.2, 0.1]
    t0, s0 = best_threshold(pos, neg, target_unknown_recall=0.0)
    assert t0 == pytest.approx(0.45)
    assert s0["balanced_accuracy"] == pytest.approx(0.875)
    t, s = best_threshold(pos, neg, target_unknown_recall=0.9)
    assert t == pytest.approx(0.775)
    assert s["unknown_recall"] == 1.0 and s["answer_recall"] == pytest.approx(0.5)
    assert s["unconstrained"]["threshold"] == pytest.approx(0.45)


def test_best_threshold_identical_scores_and_errors():
    t, s = best_threshold([0.5, 0.5], [0.5], target_unknown_recall=1.0)
    assert t > 0.5 and s["unknown_recall"] == 1.0 and s["answer_recall"] == 0.0
    with pytest.raises(ValueError):
        best_threshold([], [0.1])
    with pytest.raises(ValueError):
        best_threshold([0.2], [0.1], target_unknown_recall=1.5)


# --- evaluate_retrieval ---------------------------------------------------------------------------


def _items() -> list[QAItem]:
    return [
        item(id="en-001"),
        item(
            id="en-002",
            question="Which port does munin use?",
            evidence="listens on port 4949",
            source="en-US/m.html",
        ),
        item(
            id="zh-001",
            question="密码存在哪里？",
            lang="zh",
            kind="zh",
            source="zh-CN/u.html",
            evidence="密码保存在 /etc/shadow 文件内",
        ),
        item(
            id="cross-001",
            question="Where is the password hash?",
            kind="cross",
            source="zh-CN/u.html",
            evidence="密码保存在 /etc/shadow 文件内",
        ),
        unanswerable("un-001"),
        unanswerable("un-002", lang="zh"),
    ]


def _search(question: str) -> list[Hit]:
    filler = [hit(f"filler {i}", score=0.2) for i in range(12)]
    table = {
        "Where are crontabs stored?": [hit("stored in the /var/spool/cron/crontabs/ user file", score=0.9)],
        "Which port does munin use?": [*filler[:2], hit("x", source="/kb/en-US/m.html", score=0.3)],
        "密码存在哪里？": [*filler[:11], hit("密码保存在 /etc/shadow 文件内")],
        "Where is the password hash?": [
            hit("no", score=0.7),
            hit("把密码保存在 /etc/shadow 文件内。", score=0.6),
        ],
        "How do I tune Kubernetes?": [hit("filler", score=0.25)],
    }
    return table.get(question, [])


def test_evaluate_retrieval_report():
    report = evaluate_retrieval(_search, _items(), k=10)
    ranks = {r.id: r.rank for r in report.results}
    assert ranks == {"en-001": 1, "en-002": 3, "zh-001": None, "cross-001": 2, "un-001": None, "un-002": None}
    o = report.overall
    assert o["n"] == 4
    assert o["recall@1"] == pytest.approx(0.25)
    assert o["recall@5"] == pytest.approx(0.75)
    assert o["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 4)
    assert o["ndcg@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(3)) / 4)
    assert set(report.by_kind) == {"en", "zh", "cross"}
    assert report.by_kind["en"]["recall@5"] == 1.0 and report.by_kind["zh"]["recall@10"] == 0.0
    assert report.by_lang["en"]["n"] == 3 and report.by_lang["zh"]["n"] == 1
    assert report.latency_ms["n"] == 6 and report.latency_ms["p50"] >= 0
    assert report.scores["answerable"]["scores"] == [0.9, 0.2, 0.2, 0.7]
    assert report.scores["unanswerable"]["scores"] == [0.25]  # un-002 got no hits: no top score
    assert report.scores["unanswerable"]["summary"]["n"] == 1
    assert report.gate is not None and "threshold" in report.gate
    data = json.loads(json.dumps(report.to_dict()))
    assert len(data["results"]) == 6 and "results" not in report.to_dict(include_results=False)
    table = report.format_table()
    for needle in (
        "recall@1",
        "mrr@10",
        "kind=cross",
        "lang=zh",
        "latency ms",
        "top score",
        "gate threshold",
    ):
        assert needle in table


def test_evaluate_retrieval_validates_arguments():
    with pytest.raises(ValueError):
        evaluate_retrieval(_search, _items(), k=0)
    with pytest.raises(ValueError):
        evaluate_retrieval(_search, _items(), match="nope")


# --- QA loader ------------------------------------------------------------------------------------

GOOD = {
    "id": "en-001",
    "question": "q?",
    "lang": "en",
    "source": "en-US/a.html",
    "evidence": "some words of evidence here",
    "answer_keywords": ["k"],
    "answer": "a.",
    "answerable": True,
    "kind": "en",
}


def _write(tmp_path: Path, records: list, name: str = "qa.jsonl") -> Path:
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_qa_valid_and_roundtrip(tmp_path):
    un = {"id": "un-001", "question": "k8s?", "lang": "zh", "answerable": False, "kind": "unanswerable"}
    path = _write(tmp_path, [GOOD, "", {**un, "note": "extra key kept"}])
    items = load_qa(path)
    assert [i.id for i in items] == ["en-001", "un-001"]
    assert items[0].evidence == GOOD["evidence"] and items[0].answer_keywords == ["k"]
    assert items[1].extra == {"note": "extra key kept"} and items[1].source is None
    assert items[0].to_dict() == GOOD
    assert QAItem.from_dict(items[1].to_dict()) == items[1]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "question"}, "line 2: missing 'question'"),
        ({**GOOD, "lang": "fr"}, "line 2: 'lang' must be one of en, zh (got 'fr')"),
        ({**GOOD, "kind": "other"}, "line 2: 'kind' must be one of en, zh, cross, unanswerable"),
        ({**GOOD, "answerable": "yes"}, "line 2: 'answerable' must be true or false"),
        ({**GOOD, "kind": "unanswerable"}, "line 2: 'answerable' is true but kind is 'unanswerable'"),
        (
            {k: v for k, v in GOOD.items() if k != "evidence"},
            "line 2: missing 'evidence' (required when answerable, unless 'page' is given)",
        ),
        ({**GOOD, "answer_keywords": "k"}, "line 2: 'answer_keywords' must be a list of non-empty strings"),
        ({**GOOD, "page": 0}, "line 2: 'page' must be a positive integer"),
        ({**GOOD, "question": "  "}, "line 2: 'question' must be a non-empty string"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"id": "x",', "line 2: invalid JSON"),
    ],
)
def test_load_qa_errors_name_the_line(tmp_path, record, message):
    first = {**GOOD, "id": "en-000"}
    path = _write(tmp_path, [first, record])
    with pytest.raises(ConfigError) as exc:
        load_qa(path)
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


def test_load_qa_duplicate_empty_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3: duplicate id 'en-001' \(first on line 1\)"):
        load_qa(_write(tmp_path, [GOOD, {**GOOD, "id": "en-002"}, GOOD]))
    with pytest.raises(ConfigError, match="and 1 more"):
        load_qa(_write(tmp_path, [{**GOOD, "lang": "xx", "kind": "yy"}]))
    with pytest.raises(ConfigError, match="no QA items"):
        load_qa(_write(tmp_path, ["", "  "], name="empty.jsonl"))
    with pytest.raises(ConfigError, match="not found"):
        load_qa(tmp_path / "missing.jsonl")


def test_qaitem_validates_on_construction():
    with pytest.raises(ConfigError, match="'lang' must be one of"):
        QAItem(id="x", question="q", lang="de", answerable=False, kind="unanswerable")
    with pytest.raises(ConfigError, match="missing 'source'"):
        QAItem(id="x", question="q", lang="en", answerable=True, kind="en", evidence="e")


def test_import_is_light():
    code = (
        "import sys, kb_assistant.evaluation; "
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- check_qa.py ----------------------------------------------------------------------------------


def _check_qa_module():
    spec = importlib.util.spec_from_file_location("check_qa", REPO / "benchmarks" / "data" / "check_qa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_qa_on_tiny_corpus(tmp_path):
    pytest.importorskip("bs4")
    check_qa = _check_qa_module()
    corpus = tmp_path / "corpus"
    (corpus / "en-US").mkdir(parents=True)
    (corpus / "zh-CN").mkdir()
    (corpus / "en-US" / "a.html").write_text(
        "<html><head><style>p {color: red}</style><script>var hidden = 'secret words in a script';</script>"
        "</head><body><p>The daemon <code>munin-node</code> listens on\n port <b>4949</b> and sends data.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    (corpus / "zh-CN" / "a.html").write_text(
        "<html><body><p>把哈希编码后的密码保存在 <code>/etc/shadow</code> 文件内。</p></body></html>",
        encoding="utf-8",
    )
    ok_en = {**GOOD, "source": "en-US/a.html", "evidence": "the daemon munin-node LISTENS on port 4949"}
    ok_cross = {
        **GOOD,
        "id": "cross-001",
        "kind": "cross",
        "source": "zh-CN/a.html",
        "evidence": "把哈希编码后的密码保存在 /etc/shadow 文件内",
    }
    bad_script = {**GOOD, "id": "en-002", "evidence": "secret words in a script"}
    bad_kind = {
        **GOOD,
        "id": "en-003",
        "source": "zh-CN/a.html",
        "evidence": "把哈希编码后的密码保存在 /etc/shadow 文件内",
    }
    absent = {
        "id": "un-001",
        "question": "q",
        "lang": "en",
        "answerable": False,
        "kind": "unanswerable",
        "absent_terms": ["Kubernetes", "munin-node"],
    }
    qa = _write(tmp_path, [ok_en, ok_cross, bad_script, bad_kind, absent])
    failures, counts = check_qa.check(qa, check_qa.Corpus(corpus))
    text = "\n".join(failures)
    assert counts == {"en": 3, "cross": 1, "unanswerable": 1}
    assert "en-001" not in text and "cross-001" not in text
    assert "en-002: evidence not found in en-US/a.html" in text
    assert "en-003: kind 'en' needs a source under en-US/" in text
    assert "un-001: absent term 'munin-node' does occur" in text and "Kubernetes" not in text
    assert "only 3 'en' items (want >= 60)" in text
    assert "unanswerable items must cover en and zh" in text
    assert check_qa.main([str(qa), "--corpus", str(corpus)]) == 1
    assert check_qa.main([str(qa), "--corpus", str(tmp_path / "nowhere")]) == 2


def test_debian_qa_file_schema():
    items = load_qa(QA_FILE)
    kinds = {k: sum(i.kind == k for i in items) for k in ("en", "zh", "cross", "unanswerable")}
    assert kinds["en"] >= 60 and kinds["zh"] >= 50 and kinds["cross"] >= 20 and kinds["unanswerable"] >= 30
    assert all(i.source.startswith("zh-CN/") for i in items if i.kind == "cross")


@pytest.mark.skipif(not (CORPUS / "en-US").is_dir(), reason="run scripts/get_debian_handbook.sh first")
def test_debian_qa_evidence_against_corpus(capsys):
    pytest.importorskip("bs4")
    assert _check_qa_module().main([str(QA_FILE), "--corpus", str(CORPUS)]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_best_threshold_false_unknown_cap():
    # balanced accuracy ties (0.95) between refusing below 0.41 (unknown recall 1.0, one answerable of 10
    # refused) and below 0.36 (unknown recall 0.9, none refused); the tie goes to refusing more, unless
    # false unknowns are capped under 10 %
    pos = [0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99]
    neg = [0.1, 0.12, 0.15, 0.2, 0.22, 0.25, 0.28, 0.3, 0.32, 0.42]
    t0, s0 = best_threshold(pos, neg, target_unknown_recall=0.9)
    assert 0.42 < t0 < 0.45 and s0["answer_recall"] == pytest.approx(0.9) and s0["unknown_recall"] == 1.0
    t, s = best_threshold(pos, neg, target_unknown_recall=0.9, max_false_unknown=0.05)
    assert 0.32 < t < 0.4 and s["unknown_recall"] == pytest.approx(0.9) and s["answer_recall"] == 1.0
    assert s["targets_met"]
    # unreachable caps fall back to the unknown-recall target and say so
    t2, s2 = best_threshold(pos, neg, target_unknown_recall=1.0, max_false_unknown=0.0)
    assert t2 == t0 and not s2["targets_met"]
