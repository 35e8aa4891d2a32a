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


def _scores(idx: SparseIndex, query: str) -> dict[int, float]:
    ids, scores = idx.search(query, 10**6)
    return dict(zip(ids.tolist(), scores.tolist(), strict=True))


@pytest.mark.parametrize("block", [1 << 22, 37])  # one merge block, many (term ranges split)
def test_base_delta_tombstones_equal_a_rebuild(tmp_path, monkeypatch, block):
    """A saved (memory-mapped) base, then removes of base and delta rows, re-adds and new terms: the
    scores equal a from-scratch index at every step, also after the merge on save."""
    from kb_assistant.store import sparse

    monkeypatch.setattr(sparse, "_BLOCK", block)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    docs = {i: rng.choice(words, rng.integers(3, 30)).tolist() for i in range(1, 400)}
    idx = SparseIndex(tmp_path / "bm25.npz")
    idx.add_tokens(list(docs)[:300], [docs[i] for i in list(docs)[:300]])
    idx.save()
    assert isinstance(idx._b["crows"], np.memmap) and isinstance(idx._b["ctfs"], np.memmap)
    idx.add_tokens(list(docs)[300:], [docs[i] for i in list(docs)[300:]])  # the delta
    idx.remove([5, 17, 301, 350, 10**6])  # base and delta rows, and an unknown id
    docs = {i: t for i, t in docs.items() if i not in (5, 17, 301, 350)}
    docs[42] = ["brand", "new", "w1"]  # re-add of a base row, with a term the base never had
    docs[399] = ["w2", "w2", "w3"]  # re-add of a delta row
    idx.add_tokens([42, 399], [docs[42], docs[399]])

    def check(index: SparseIndex) -> None:
        fresh = SparseIndex()
        fresh.add_tokens(list(docs), list(docs.values()))
        assert len(index) == len(docs)
        for q in ["w1 w2", "brand", "w7 w8 w9 w10", "new w59", "w0"]:
            assert _scores(index, q) == pytest.approx(_scores(fresh, q), rel=1e-5)
        allowed = np.array(sorted(docs)[::3], np.int64)
        got, _ = index.search("w1 w2 brand", 20, allowed=allowed)
        want, _ = fresh.search("w1 w2 brand", 20, allowed=allowed)
        assert set(got.tolist()) == set(want.tolist()) and np.isin(got, allowed).all()

    check(idx)
    idx.save()
    assert not idx._d_ids and idx._n_dead_base == 0  # merged: no delta, no tombstones
    check(idx)
    check(SparseIndex(tmp_path / "bm25.npz"))
    assert sorted(SparseIndex(tmp_path / "bm25.npz").ids.tolist()) == sorted(docs)


def test_format_1_files_still_load(tmp_path):
    """An index saved by the previous version (document-major arrays only) loads, then saves as format 2."""
    import json

    from kb_assistant.analysis import ANALYZER_VERSION

    idx = _index()
    tids = [np.array([idx.vocab[t] for t in dict.fromkeys(analyze(DOCS[i]))], np.int32) for i in DOCS]
    tfs = [np.array([analyze(DOCS[i]).count(idx.terms[t]) for t in row], np.float32)
           for i, row in zip(DOCS, tids, strict=True)]
    meta = {"format": 1, "analyzer": ANALYZER_VERSION, "k1": 1.2, "b": 0.75}
    with open(tmp_path / "bm25.npz", "wb") as fh:
        np.savez(fh, ids=np.array(list(DOCS), np.int64),
                 indptr=np.concatenate([[0], np.cumsum([len(t) for t in tids])]).astype(np.int64),
                 term_ids=np.concatenate(tids), tfs=np.concatenate(tfs),
                 vocab=np.frombuffer("\n".join(idx.terms).encode("utf-8"), np.uint8),
                 meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8))
    old = SparseIndex(tmp_path / "bm25.npz")
    assert len(old) == len(DOCS)
    for q in ["fstab", "防火墙", "install ssh", "ERR_42"]:
        assert _scores(old, q) == pytest.approx(_scores(idx, q))
    old.save()
    again = SparseIndex(tmp_path / "bm25.npz")
    assert json.loads(bytes(np.load(tmp_path / "bm25.npz")["meta"]))["format"] == 2
    assert _scores(again, "install ssh") == pytest.approx(_scores(idx, "install ssh"))


def test_npz_members_mapped_or_read(tmp_path):
    from kb_assistant.store.npz import read_npz

    a = np.arange(10, dtype=np.int32)
    np.savez(tmp_path / "plain.npz", a=a, empty=np.zeros(0, np.float32))
    np.savez_compressed(tmp_path / "packed.npz", a=a)
    plain, packed = read_npz(tmp_path / "plain.npz"), read_npz(tmp_path / "packed.npz")
    assert isinstance(plain["a"], np.memmap) and plain["a"].tolist() == a.tolist()
    assert plain["empty"].shape == (0,) and packed["a"].tolist() == a.tolist()  # read, not mapped
    np.savez(tmp_path / "objects.npz", o=np.array([{"x": 1}], dtype=object))
    for bad in ("objects.npz", "plain.npz/a"):  # a pickled member is refused; not a file either
        with pytest.raises((ValueError, OSError)):
            read_npz(tmp_path / bad)
