"""Hybrid retrieval: fusion, filters, scores, de-duplication, neighbours, Chinese, query language."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from kb_assistant import KnowledgeBase
from kb_assistant.config import KBConfig, RetrievalConfig
from kb_assistant.errors import ConfigError
from kb_assistant.retrieval import channel_terms, demote_twins, fuse, mmr_order

EN = {
    "guide/apt.md": "# Packages\n\nInstall software with apt-get install. The apt-get tool fetches packages "
                    "from the mirrors listed in sources.list.",
    "guide/fstab.txt": "Mount points at boot are listed in /etc/fstab, one filesystem per line.",
    "guide/errors.md": "# Errors\n\nThe backup tool exits with ERR_42 when the disk is full.",
    "ops/network.txt": "Network interfaces are configured in /etc/network/interfaces with ifup and ifdown.",
    "ops/copy1.txt": "Firewall rules are written with nftables and loaded at boot by the nftables service.",
    "ops/copy2.txt": "Firewall rules are written with nftables and loaded at boot by the nftables service.",
    "ops/long.txt": "\n\n".join(f"Paragraph {i} about logrotate: rotation rule number {i} keeps {i} files of "
                                 f"history and compresses the old {i} logs." for i in range(40)),
}
ZH = {
    "zh/网络.txt": "网络接口的配置保存在 /etc/network/interfaces 文件中，使用 ifup 命令启用接口。",
    "zh/防火墙.txt": "防火墙规则使用 nftables 编写，系统启动时由 nftables 服务加载。",
    "zh/软件包.txt": "使用 apt 命令安装和升级软件包，软件源列表保存在 sources.list 文件中。",
    "zh/用户.txt": "使用 adduser 命令创建新用户，并为其设置密码和主目录。",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("ret")
    docs = root / "docs"
    for name, text in {**EN, **ZH}.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    old = docs / "guide" / "fstab.txt"
    os.utime(old, (time.time() - 86400 * 30, time.time() - 86400 * 30))
    kb = KnowledgeBase(root / "kb", {"chunking": {"chunk_tokens": 64, "overlap_tokens": 0}})
    kb.ingest(docs / "guide", tags=["guide"])
    kb.ingest(docs / "ops", tags=["ops"])
    kb.ingest(docs / "zh")
    yield kb
    kb.close()


def _names(hits):
    return [h.source.rsplit("/", 1)[-1] for h in hits]


def test_exact_terms_found(kb):
    assert _names(kb.search("ERR_42", k=1)) == ["errors.md"]
    assert _names(kb.search("fstab", k=1)) == ["fstab.txt"]
    assert _names(kb.search("which program fetches packages, apt-get?", k=1)) == ["apt.md"]


def test_hit_scores_and_metadata(kb):
    hits = kb.search("where are mount points listed at boot", k=3)
    assert hits and _names(hits)[0] == "fstab.txt"
    for h in hits:
        assert 0.0 <= h.score <= 1.0
        for key in ("dense_score", "bm25_score", "bm25_norm", "fused", "query_lang", "doc_id"):
            assert key in h.metadata
    unrelated = kb.search("recipe for chocolate cake with strawberries", k=1)
    assert unrelated[0].score < hits[0].score


def test_modes(kb):
    for mode in ("dense", "sparse", "hybrid"):
        for fusion in ("rrf", "weighted"):
            other = KnowledgeBase(kb.path, {"retrieval": {"mode": mode, "fusion": fusion}})
            assert _names(other.search("ERR_42 disk full", k=1)) == ["errors.md"], (mode, fusion)
    sparse = KnowledgeBase(kb.path, {"retrieval": {"mode": "sparse"}})
    assert sparse.search("completely unrelated zebra", k=3) == []


def test_fuse_rrf_and_weighted():
    cand = np.array([10, 20, 30])
    cfg = RetrievalConfig(fusion="rrf")
    rrf = fuse(cand, np.array([10, 20]), np.array([30, 20]), np.zeros(3), np.zeros(3), cfg)
    assert rrf.argmax() == 1  # in both lists
    assert rrf[1] == pytest.approx(1 / 62 + 1 / 62)
    w = fuse(cand, cand, cand, np.array([0.9, 0.5, 0.1]), np.array([0.0, 1.0, 2.0]),
             RetrievalConfig(fusion="weighted", dense_weight=0.8))
    assert w.tolist() == pytest.approx([0.8, 0.5, 0.2])


def test_fuse_single_mode_keeps_its_scale():
    cand = np.array([1, 2])
    dense = fuse(cand, cand, cand, np.array([0.9, 0.1]), np.array([0.0, 5.0]),
                 RetrievalConfig(mode="dense", fusion="weighted"))
    assert dense.tolist() == pytest.approx([0.5, 0.0])  # half, as before channels existed
    rrf = channel_terms(cand, np.array([2]), np.zeros(2), RetrievalConfig(fusion="rrf"))
    assert rrf.tolist() == pytest.approx([0.0, 2 / 61])


def test_demote_twins():
    # candidates 0 (zh) and 1 (en) are translations of each other; 2 (zh) is about something else
    x = np.array([[1, 0, 0], [0.96, 0.28, 0], [0, 0, 1]], dtype=np.float32)
    same = np.array([False, True, False])
    fused = np.array([0.9, 0.8, 0.85])
    out = demote_twins(fused, x, same, 0.9)
    assert np.argsort(-out).tolist() == [2, 1, 0]  # the twin goes right after the asker's version only
    assert out[2] == fused[2] and out[1] == fused[1]
    assert demote_twins(fused, x, same, 1.0) is fused
    assert demote_twins(fused, x, np.ones(3, bool), 0.5) is fused


def test_mmr_and_dedup():
    v = np.array([[1, 0], [1, 0], [0.9, 0.436], [0, 1]], dtype=np.float32)
    assert mmr_order(v, 4, 3, 0.0, 0.95) == [0, 2, 3]
    assert mmr_order(v, 4, 4, 0.0, 0.95) == [0, 2, 3, 1]  # the duplicate only fills up
    assert mmr_order(v, 4, 2, 0.3, 1.0) == [0, 3]


def test_near_duplicates_suppressed(kb):
    names = _names(kb.search("firewall rules nftables", k=2))
    assert sorted(names)[:1] != ["copy1.txt", "copy2.txt"]
    assert len({"copy1.txt", "copy2.txt"} & set(names)) == 1


@pytest.mark.parametrize("filters, allowed", [
    ({"source": "*/ops/*"}, {"network.txt", "copy1.txt", "copy2.txt", "long.txt"}),
    ({"source": ["guide/*.md"]}, {"apt.md", "errors.md"}),
    ({"file_type": "md"}, {"apt.md", "errors.md"}),
    ({"tags": ["guide"]}, {"apt.md", "fstab.txt", "errors.md"}),
    ({"tags": "nope"}, set()),
    ({"lang": "zh"}, set(ZH and [n.split("/")[1] for n in ZH])),
    ({"mtime_before": time.time() - 86400}, {"fstab.txt"}),
    ({"mtime_after": time.time() - 86400, "tags": "guide"}, {"apt.md", "errors.md"}),
])
def test_filters_before_cut(kb, filters, allowed):
    query = "fstab network firewall packages 网络"
    hits = kb.search(query, k=5, filters=filters)
    assert set(_names(hits)) <= allowed
    every = [h for h in kb.search(query, k=200) if _names([h])[0] in allowed]  # all chunks, unfiltered
    assert len(hits) == min(5, len(every))


def test_unknown_filter_rejected(kb):
    with pytest.raises(ConfigError, match="allowed"):
        kb.search("x", filters={"colour": "red"})


def test_neighbours_context(kb):
    other = KnowledgeBase(kb.path, {"retrieval": {"neighbours": 1}})
    hit = other.search("rotation rule number 20 logrotate", k=1)[0]
    assert _names([hit]) == ["long.txt"]
    assert hit.text in hit.metadata["context"] and len(hit.metadata["context"]) > len(hit.text)


def test_chinese_retrieval(kb):
    assert _names(kb.search("怎么配置网络接口", k=1)) == ["网络.txt"]
    assert _names(kb.search("如何创建新用户", k=1)) == ["用户.txt"]
    assert _names(kb.search("防火墙规则", k=1)) == ["防火墙.txt"]
    assert kb.search("如何创建新用户", k=1)[0].metadata["query_lang"] == "zh"


def test_empty_and_k0(kb):
    assert kb.search("   ", k=5) == []
    assert kb.search("fstab", k=0) == []


def test_config_validation():
    with pytest.raises(ConfigError, match="fusion"):
        KBConfig.from_dict({"retrieval": {"fusion": "max"}})


def test_evaluate_and_calibrate(kb, tmp_path):
    import json

    from kb_assistant.calibration import CALIBRATION_FILE
    from kb_assistant.evaluation.retrieval_eval import evaluate_kb, fit_logistic

    qa = [
        {"id": "en-1", "question": "where is the list of mount points?", "lang": "en", "kind": "en",
         "answerable": True, "source": "guide/fstab.txt", "evidence": "listed in /etc/fstab"},
        {"id": "en-2", "question": "what does ERR_42 mean", "lang": "en", "kind": "en", "answerable": True,
         "source": "guide/errors.md", "evidence": "exits with ERR_42"},
        {"id": "zh-1", "question": "怎么创建用户", "lang": "zh", "kind": "zh", "answerable": True,
         "source": "zh/用户.txt", "evidence": "adduser 命令创建新用户"},
        {"id": "un-1", "question": "what is the capital of Peru", "lang": "en", "kind": "unanswerable",
         "answerable": False},
        {"id": "un-2", "question": "best pizza toppings for children", "lang": "en", "kind": "unanswerable",
         "answerable": False},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in qa), encoding="utf-8")
    report = evaluate_kb(kb, path, k=5)
    assert report.overall["recall@5"] == 1.0 and set(report.by_lang) == {"en", "zh"}
    w = fit_logistic(np.array([[0.1, 0.0], [0.2, 0.1], [0.6, 0.5], [0.7, 0.9]]), np.array([0, 0, 1, 1.0]))
    assert w[1] > 0 and w[2] > 0
    from kb_assistant.evaluation.retrieval_eval import calibrate

    threshold = calibrate(kb, path)
    assert 0.0 <= threshold <= 1.0
    saved = json.loads((kb.path / CALIBRATION_FILE).read_text())
    assert saved["embedder"] == kb.embedder.name and saved["threshold"] == threshold
    assert kb.retriever.calibration.source.endswith(CALIBRATION_FILE)
    (kb.path / CALIBRATION_FILE).unlink()
    kb.reload_calibration()
