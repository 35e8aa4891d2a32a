"""Derived indexes: DenseIndex save/load round trip, and Indexes (lazy open, crash repair, add/remove/save,
verify) over a DocStore in tmp_path with random unit vectors (no embedder)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kb_assistant.store.indexes import DENSE_FILE, SPARSE_FILE, Indexes, sparse_text
from kb_assistant.store.vector import DenseIndex

DIM = 8
TEXTS = {
    "a.txt": ["the kernel module loads firmware", "printer drivers live in cups"],
    "b.txt": ["backup rotation runs nightly", "vacation requests go to hr"],
}


def _unit(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------ DenseIndex


def test_dense_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.faiss"
    index = DenseIndex(path, DIM)
    assert index.ntotal == 0 and not path.exists()
    ids = np.array([5, 17, 3, 1000, 42], dtype=np.int64)
    vecs = _unit(rng, 5)
    index.add(ids, vecs)
    assert index.dirty
    index.save()
    assert not index.dirty and sorted(p.name for p in tmp_path.iterdir()) == ["d.faiss", "d.faiss.json"]

    loaded = DenseIndex(path, DIM)
    assert loaded.ntotal == 5 and sorted(loaded.ids().tolist()) == sorted(ids.tolist())
    for q in _unit(rng, 4):
        s1, i1 = index.search(q, 3)
        s2, i2 = loaded.search(q, 3)
        assert i1.tolist() == i2.tolist() and np.allclose(s1, s2)
    # each stored vector is its own best match, with score 1
    scores, got = loaded.search(vecs[3], 1)
    assert got[0, 0] == 1000 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    # the restriction to allowed ids applies to the loaded index too
    _, got = loaded.search(vecs[3], 2, allowed=np.array([5, 42], np.int64))
    assert set(got[0].tolist()) == {5, 42}

    loaded.remove([1000, 3])
    loaded.save()
    again = DenseIndex(path, DIM)
    assert sorted(again.ids().tolist()) == [5, 17, 42]
    assert 1000 not in again.search(vecs[3], 3)[1][0].tolist()


def test_dense_empty_search_and_wrong_dimension(tmp_path, caplog):
    path = tmp_path / "d.faiss"
    scores, ids = DenseIndex(path, DIM).search(np.ones(DIM, np.float32), 5)
    assert ids.tolist() == [[-1]] and np.isneginf(scores).all()
    index = DenseIndex(path, DIM)
    index.add(np.arange(3, dtype=np.int64), _unit(np.random.default_rng(1), 3))
    index.save()
    with caplog.at_level(logging.WARNING):
        other = DenseIndex(path, DIM * 2)  # another embedder's dimension: start empty, not crash
    assert other.ntotal == 0 and "rebuilding" in caplog.text


def test_dense_reconcile(tmp_path):
    rng = np.random.default_rng(2)
    table = {i: v for i, v in zip(range(10), _unit(rng, 10), strict=True)}
    index = DenseIndex(tmp_path / "d.faiss", DIM)
    index.add(np.array([0, 1, 2, 90, 91], np.int64), np.stack([table[0], table[1], table[2],
                                                               *_unit(rng, 2)]))
    asked = []

    def fetch(ids):
        asked.extend(int(i) for i in ids)
        return np.stack([table[int(i)] for i in ids])

    store_ids = np.arange(10, dtype=np.int64)
    assert index.reconcile(store_ids, fetch) == (7, 2)
    assert sorted(asked) == list(range(3, 10))  # only the missing vectors are fetched
    assert sorted(index.ids().tolist()) == list(range(10))
    assert index.search(table[7], 1)[1][0, 0] == 7
    assert index.reconcile(store_ids, fetch) == (0, 0)


# ------------------------------------------------------------------ Indexes


def _fill(store, add_doc, paths=("a.txt", "b.txt")):
    return {p: add_doc(store, p, TEXTS[p], dim=DIM)[1] for p in paths}


def test_indexes_open_lazily(tmp_path, docstore, add_doc):
    _fill(docstore, add_doc)
    calls = []

    def dim():
        calls.append(1)
        return DIM

    idx = Indexes(tmp_path / "kb", docstore, dim)
    idx.save()  # nothing loaded: nothing to save, nothing written
    assert calls == [] and not (tmp_path / "kb" / DENSE_FILE).exists()
    assert idx.sparse.ids.size == 4 and calls == []  # the sparse index needs no dimension
    assert (tmp_path / "kb" / SPARSE_FILE).exists() and not (tmp_path / "kb" / DENSE_FILE).exists()
    assert idx.dense is idx.dense and idx.dense.ntotal == 4  # built once, from the docstore
    assert (tmp_path / "kb" / DENSE_FILE).exists()  # the repair was saved


def test_open_repairs_indexes_after_a_crash(tmp_path, docstore, add_doc, unit_vector):
    ids = _fill(docstore, add_doc)
    Indexes(tmp_path / "kb", docstore, DIM).open()  # both saved, in step with the docstore
    # a crash between docstore commits and the index saves: c.txt committed, b.txt deleted
    _, c_ids = add_doc(docstore, "c.txt", ["the wiki moved to confluence"], dim=DIM)
    docstore.delete_document(docstore.documents()[1].doc_id)
    stale = Indexes(tmp_path / "kb", docstore, DIM).verify()
    assert stale["chunks"] == 3 and stale["index_ids"] == 4
    assert stale["only_in_index"] == 2 and stale["only_in_docstore"] == 1
    assert stale["only_in_sparse"] == 2 and stale["only_in_docstore_sparse"] == 1

    idx = Indexes(tmp_path / "kb", docstore, DIM)
    idx.open()
    want = sorted(ids["a.txt"] + c_ids)
    assert sorted(idx.dense.ids().tolist()) == want and sorted(idx.sparse.ids.tolist()) == want
    assert idx.dense.search(unit_vector(TEXTS["a.txt"][1], DIM), 1)[1][0, 0] == ids["a.txt"][1]
    assert idx.sparse.search("confluence", 3)[0].tolist() == c_ids
    assert idx.sparse.search("nightly", 3)[0].tolist() == []  # the deleted document's terms are gone
    fixed = Indexes(tmp_path / "kb", docstore, DIM).verify()  # the repair is on disk
    assert fixed["only_in_index"] == fixed["only_in_docstore"] == fixed["duplicate_index_ids"] == 0
    assert fixed["only_in_sparse"] == fixed["only_in_docstore_sparse"] == fixed["duplicate_sparse_ids"] == 0
    assert fixed["index_ids"] == fixed["sparse_ids"] == fixed["chunks"] == 3


def test_add_remove_save(tmp_path, docstore, add_doc, unit_vector):
    _fill(docstore, add_doc, ["a.txt"])
    idx = Indexes(tmp_path / "kb", docstore, DIM)
    idx.open()
    _, new = add_doc(docstore, "b.txt", TEXTS["b.txt"], dim=DIM)  # committed first, then indexed
    idx.add(np.asarray(new, np.int64), np.stack([unit_vector(t, DIM) for t in TEXTS["b.txt"]]))
    assert idx.dense.dirty and idx.sparse.dirty
    assert idx.dense.search(unit_vector(TEXTS["b.txt"][0], DIM), 1)[1][0, 0] == new[0]
    assert idx.sparse.search("vacation", 2)[0].tolist() == [new[1]]
    assert Indexes(tmp_path / "kb", docstore, DIM).verify()["only_in_docstore"] == 2  # not saved yet
    idx.save()
    assert not idx.dense.dirty and not idx.sparse.dirty
    assert Indexes(tmp_path / "kb", docstore, DIM).verify()["only_in_docstore"] == 0

    removed = docstore.delete_document(docstore.documents()[1].doc_id)
    idx.remove(removed)
    idx.remove([])  # nothing to do
    assert idx.sparse.search("vacation", 2)[0].tolist() == []
    assert not set(idx.dense.ids().tolist()) & set(removed)
    idx.save()
    report = Indexes(tmp_path / "kb", docstore, DIM).verify()
    assert report["only_in_index"] == report["only_in_sparse"] == 0 and report["index_ids"] == 2


def test_sparse_text_indexes_title_and_heading(tmp_path, docstore, add_doc):
    _, ids = add_doc(docstore, "a.txt", ["body words"],
                     metas=[{"title": "Handbook", "heading": "Printing", "lang": "en"}], dim=DIM)
    row = docstore.get_chunks(ids)[ids[0]]
    assert sparse_text(row) == "Handbook Printing\nbody words"
    idx = Indexes(tmp_path / "kb", docstore, DIM)
    assert idx.sparse_texts([ids[0], 10**6]) == ["Handbook Printing\nbody words", ""]
    assert idx.sparse.search("handbook", 1)[0].tolist() == ids  # the heading is searchable
