"""BM25 sparse index and analyzer: token rules, exact incremental add/remove, persistence, crash recovery."""

from __future__ import annotations

import numpy as np
import pytest

from kb_assistant.analysis import analyze
from kb_assistant.store.sparse import SparseIndex

DOCS = {
    1: "Run apt-get install openssh-server to install the SSH daemon.",
    2: "The file /etc/fstab lists the filesystems mounted at boot time.",
    3: "Error ERR_42 means the disk quota is exceeded; run dpkg-reconfigure quota.",
    4: "使用 apt 安装软件包，然后配置网络接口。",
    5: "防火墙规则保存在 iptables 配置文件中。",
}


@pytest.mark.parametrize("text, expected", [
    ("apt-get", ["apt-get", "apt", "get"]),
    ("/etc/fstab", ["/etc/fstab", "etc", "fstab"]),
    ("ERR_42", ["err_42", "err", "42"]),
    ("dpkg-reconfigure", ["dpkg-reconfigure", "dpkg", "reconfigure"]),
    ("The Packages", ["package"]),
    ("ＡＢＣ", ["abc"]),
])
def test_analyzer_english_rules(text, expected):
    assert analyze(text) == expected


def test_analyzer_keeps_sentence_punctuation_out():
    assert analyze("Edit /etc/fstab. Then reboot.") == ["edit", "/etc/fstab", "etc", "fstab", "reboot"]


def test_analyzer_chinese_words():
    toks = analyze("如何配置网络接口？")
    assert "配置" in toks and "网络" in toks and "接口" in toks
    assert "如何" not in toks and "？" not in toks
    mixed = analyze("用 apt-get 安装软件包")
    assert "apt-get" in mixed and "安装" in mixed and "软件包" in mixed


def _index(tmp_path=None, docs=DOCS):
    idx = SparseIndex(tmp_path / "bm25.npz" if tmp_path else None)
    idx.add(list(docs), list(docs.values()))
    return idx


def test_search_exact_terms_and_parts():
    idx = _index()
    assert idx.search("/etc/fstab", 3)[0][0] == 2
    assert idx.search("fstab", 3)[0][0] == 2
    assert idx.search("ERR_42", 3)[0][0] == 3
    assert idx.search("apt-get", 3)[0][0] == 1
    assert idx.search("网络接口怎么配置", 3)[0][0] == 4
    assert len(idx.search("kubernetes", 3)[0]) == 0


def test_incremental_equals_rebuild():
    idx = _index()
    idx.remove([2, 4])
    idx.add([6], ["mount options live in /etc/fstab too"])
    fresh = SparseIndex()
    docs = {i: t for i, t in DOCS.items() if i not in (2, 4)} | {6: "mount options live in /etc/fstab too"}
    fresh.add(list(docs), list(docs.values()))
    for q in ["fstab", "apt install", "配置", "quota ERR_42"]:
        a, b = idx.search(q, 10), fresh.search(q, 10)
        got = dict(zip(a[0].tolist(), a[1].tolist(), strict=True))
        assert got == pytest.approx(dict(zip(b[0].tolist(), b[1].tolist(), strict=True)))


def test_deleted_terms_never_match_and_leave_no_trace(tmp_path):
    idx = _index(tmp_path)
    idx.remove([3])
    assert len(idx.search("ERR_42 quota", 5)[0]) == 0
    idx.save()
    data = (tmp_path / "bm25.npz").read_bytes()
    assert b"err_42" not in data and b"quota" not in data
    again = SparseIndex(tmp_path / "bm25.npz")
    assert len(again.search("quota", 5)[0]) == 0 and len(again) == 4


def test_readd_replaces():
    idx = _index()
    idx.add([1], ["completely different words"])
    assert len(idx) == 5
    assert 1 not in idx.search("apt-get", 5)[0].tolist()
    assert idx.search("different", 5)[0].tolist() == [1]


def test_persist_roundtrip(tmp_path):
    idx = _index(tmp_path)
    idx.save()
    again = SparseIndex(tmp_path / "bm25.npz")
    for q in ["fstab", "防火墙", "install ssh"]:
        a, b = idx.search(q, 5), again.search(q, 5)
        assert a[0].tolist() == b[0].tolist() and np.allclose(a[1], b[1])


def test_allowed_mask():
    idx = _index()
    assert idx.search("apt", 5, allowed=np.array([4, 99]))[0].tolist() == [4]
    assert len(idx.search("fstab", 5, allowed=np.array([1]))[0]) == 0


def test_corrupt_file_rebuilds_via_reconcile(tmp_path):
    (tmp_path / "bm25.npz").write_bytes(b"not a zip")
    idx = SparseIndex(tmp_path / "bm25.npz")
    assert len(idx) == 0
    added, removed = idx.reconcile(np.array([1, 2]), lambda ids: [DOCS[int(i)] for i in ids])
    assert (added, removed) == (2, 0) and idx.search("fstab", 2)[0].tolist() == [2]


def test_reconcile_after_simulated_crash(tmp_path, write):
    """Docstore committed, sparse index never saved: reopening repairs it (adds and deletes)."""
    from kb_assistant import KnowledgeBase

    docs = tmp_path / "docs"
    write(docs / "a.txt", "The fstab file lists filesystems mounted at boot.")
    write(docs / "b.txt", "Use apt-get to install packages from the archive.")
    kb = KnowledgeBase(tmp_path / "kb")
    kb.ingest(docs)
    assert kb.search("fstab", k=1)[0].source.endswith("a.txt")
    kb.close()
    sparse_file = tmp_path / "kb" / "sparse" / "bm25.npz"
    saved = sparse_file.read_bytes()

    kb = KnowledgeBase(tmp_path / "kb")
    write(docs / "c.txt", "Quota errors are reported as ERR_42 by the quota tool.")
    (docs / "a.txt").unlink()
    kb.ingest(docs, prune=True)
    kb.docstore.close()  # "crash": docstore committed; restore the old sparse file as if never saved
    sparse_file.write_bytes(saved)

    kb = KnowledgeBase(tmp_path / "kb")
    assert kb.verify()["only_in_sparse"] >= 1
    hits = kb.search("ERR_42", k=3, filters=None)
    assert hits and hits[0].source.endswith("c.txt")
    assert not [h for h in kb.search("fstab mounted boot", k=5) if h.source.endswith("a.txt")]
    kb.close()
    assert KnowledgeBase(tmp_path / "kb").verify()["ok"]
