"""SQLite docstore: schema, atomic replace/delete, labels, version counter, batched reads, neighbours."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from kb_assistant.chunking import make_chunk_id
from kb_assistant.store.docstore import SCHEMA_VERSION, DocStore, DocumentRecord
from kb_assistant.types import Chunk


def _snapshot(store: DocStore) -> tuple:
    """Everything the store holds, to compare before/after a failed write."""
    docs = [d.to_dict() for d in store.documents()]
    rows = store.conn.execute("SELECT id, chunk_id, doc_id, position, text, embed_hash, vector "
                              "FROM chunks ORDER BY id").fetchall()
    return docs, rows, store.version


def _ehash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def test_new_store_creates_schema_and_counters(tmp_path):
    store = DocStore(tmp_path / "ds.sqlite")
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "documents", "chunks"} <= tables
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert store.version == 0
    assert store.counts() == {"documents": 0, "chunks": 0, "duplicate_positions": 0}
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()


def test_reopening_keeps_data_and_version(tmp_path, add_doc):
    store = DocStore(tmp_path / "ds.sqlite")
    add_doc(store, "a.txt", ["one", "two"])
    add_doc(store, "b.txt", ["three"])
    store.close()
    again = DocStore(tmp_path / "ds.sqlite")
    assert again.version == 2  # not reset to 0 by the schema set-up
    assert [d.path for d in again.documents()] == ["a.txt", "b.txt"]
    assert again.counts()["chunks"] == 3
    again.close()


def test_replace_document_round_trip(docstore, add_doc):
    metas = [{"lang": "zh", "page": 3, "title": "手册"}, {"lang": "en"}]
    record, added = add_doc(docstore, "dir/手册.md", ["第一段。", "second"], groups=["hr"], tags=["t1"],
                            metas=metas, file_type="md", size=42, mtime=123.5)
    got = docstore.get_document(record.doc_id)
    assert got is not None
    assert (got.path, got.file_type, got.size, got.mtime) == ("dir/手册.md", "md", 42, 123.5)
    assert got.groups == ["hr"] and got.tags == ["t1"]
    assert got.n_chunks == 2 and got.ingested_at > 0
    rows = docstore.get_chunks(added)
    assert [rows[i].text for i in added] == ["第一段。", "second"]
    assert rows[added[0]].metadata == metas[0]
    assert rows[added[0]].path == "dir/手册.md" and rows[added[0]].groups == ["hr"]
    assert [rows[i].position for i in added] == [0, 1]
    assert docstore.get_document("nope") is None


def test_replace_returns_removed_ids_and_swaps_the_chunks(docstore, add_doc):
    _, first = add_doc(docstore, "a.txt", ["old one", "old two"])
    _, other = add_doc(docstore, "b.txt", ["keep me"])
    removed, added = docstore.replace_document(*_doc_args(docstore, "a.txt", ["new text"]))
    assert sorted(removed) == sorted(first)
    assert not set(added) & set(first)
    ids = docstore.chunk_ids().tolist()
    assert sorted(ids) == sorted(added + other)
    assert [docstore.get_chunks(added)[added[0]].text] == ["new text"]
    assert docstore.counts() == {"documents": 2, "chunks": 2, "duplicate_positions": 0}


def _doc_args(store, path, texts, dim=8, doc_id=None):
    from kb_assistant.chunking import make_doc_id

    doc_id = doc_id or make_doc_id(path)
    record = DocumentRecord(doc_id, path, f"h-{path}-{len(texts)}", 1.0, 1)
    chunks = [Chunk(make_chunk_id(doc_id, i, t), doc_id, i, t, {"lang": "en"}) for i, t in enumerate(texts)]
    vectors = np.ones((len(texts), dim), np.float32)
    return record, chunks, vectors, [_ehash(t) for t in texts]


def test_same_path_under_a_new_doc_id_replaces_the_old_row(docstore, add_doc):
    add_doc(docstore, "a.txt", ["x"], doc_id="old-id")
    docstore.replace_document(*_doc_args(docstore, "a.txt", ["y"], doc_id="new-id"))
    assert [d.doc_id for d in docstore.documents()] == ["new-id"]
    # the old row's chunks went with it (ON DELETE CASCADE), no orphans left behind
    assert docstore.conn.execute("SELECT DISTINCT doc_id FROM chunks").fetchall() == [("new-id",)]


def test_chunk_id_collision_rolls_back_everything(docstore, add_doc):
    add_doc(docstore, "a.txt", ["alpha", "beta"])
    _, b_ids = add_doc(docstore, "b.txt", ["gamma"])
    before = _snapshot(docstore)
    record, chunks, vectors, hashes = _doc_args(docstore, "a.txt", ["new first", "new second", "third"])
    b_chunk_id = docstore.get_chunks(b_ids)[b_ids[0]].chunk_id
    chunks[1].chunk_id = b_chunk_id  # the second insert collides with b.txt's chunk
    with pytest.raises(sqlite3.IntegrityError):
        docstore.replace_document(record, chunks, vectors, hashes)
    assert _snapshot(docstore) == before  # old a.txt document and chunks, version unchanged
    assert not docstore.conn.in_transaction
    # the connection is usable afterwards: a good replace commits
    docstore.replace_document(*_doc_args(docstore, "a.txt", ["fixed"]))
    assert docstore.version == before[2] + 1


class _Exploding(Chunk):
    """A chunk whose text cannot be read: the insert fails half-way through the document."""

    @property
    def text(self):  # type: ignore[override]
        raise RuntimeError("parser died")

    @text.setter
    def text(self, value):
        pass


def test_exception_from_a_chunk_object_rolls_back(docstore, add_doc):
    add_doc(docstore, "a.txt", ["alpha", "beta"])
    before = _snapshot(docstore)
    record, chunks, vectors, hashes = _doc_args(docstore, "a.txt", ["one", "two", "three"])
    c = chunks[2]
    chunks[2] = _Exploding(c.chunk_id, c.doc_id, c.position, c.text, c.metadata)
    with pytest.raises(RuntimeError, match="parser died"):
        docstore.replace_document(record, chunks, vectors, hashes)
    assert _snapshot(docstore) == before


def test_vector_count_mismatch_rolls_back(docstore, add_doc):
    add_doc(docstore, "a.txt", ["alpha"])
    before = _snapshot(docstore)
    record, chunks, vectors, hashes = _doc_args(docstore, "a.txt", ["one", "two"])
    with pytest.raises(ValueError):
        docstore.replace_document(record, chunks, vectors[:1], hashes)
    assert _snapshot(docstore) == before


def test_failed_write_is_never_seen_by_a_second_connection(tmp_path, add_doc):
    store = DocStore(tmp_path / "ds.sqlite")
    other = DocStore(tmp_path / "ds.sqlite")
    add_doc(store, "a.txt", ["alpha"])
    assert other.version == 1 and [d.path for d in other.documents()] == ["a.txt"]
    record, chunks, vectors, hashes = _doc_args(store, "b.txt", ["x", "y"])
    chunks[1].chunk_id = chunks[0].chunk_id
    with pytest.raises(sqlite3.IntegrityError):
        store.replace_document(record, chunks, vectors, hashes)
    assert other.version == 1 and other.get_document(record.doc_id) is None
    store.update_labels(store.documents()[0].doc_id, ["g"], [])
    assert other.version == 2 and other.documents()[0].groups == ["g"]
    other.delete_document(store.documents()[0].doc_id)
    assert store.counts()["documents"] == 0 and store.version == 3
    store.close()
    other.close()


def test_delete_document(docstore, add_doc):
    a, a_ids = add_doc(docstore, "a.txt", ["one", "two"])
    _, b_ids = add_doc(docstore, "b.txt", ["three"])
    v = docstore.version
    assert sorted(docstore.delete_document(a.doc_id)) == sorted(a_ids)
    assert docstore.get_document(a.doc_id) is None
    assert docstore.chunk_ids().tolist() == b_ids
    assert docstore.version == v + 1
    assert docstore.delete_document("missing") == []


def test_update_labels_bumps_version_and_keeps_chunks(docstore, add_doc):
    a, ids = add_doc(docstore, "a.txt", ["one", "two"], groups=["hr"], tags=["old"])
    rows_before = docstore.conn.execute("SELECT * FROM chunks ORDER BY id").fetchall()
    v = docstore.version
    docstore.update_labels(a.doc_id, ["eng", "ops"], ["new"])
    assert docstore.version == v + 1
    got = docstore.get_document(a.doc_id)
    assert got.groups == ["eng", "ops"] and got.tags == ["new"]
    assert docstore.conn.execute("SELECT * FROM chunks ORDER BY id").fetchall() == rows_before
    assert docstore.get_chunks(ids)[ids[0]].groups == ["eng", "ops"]


def test_every_change_bumps_the_version_once(docstore, add_doc):
    a, _ = add_doc(docstore, "a.txt", ["one"])
    assert docstore.version == 1
    add_doc(docstore, "a.txt", ["one", "two"])
    assert docstore.version == 2
    docstore.delete_document(a.doc_id)
    assert docstore.version == 3
    docstore.set_meta("other", "x")  # other meta keys leave the counter alone
    assert docstore.version == 3


def test_find_vectors_reuses_stored_vectors(docstore, add_doc, unit_vector):
    texts = [f"text {i}" for i in range(700)]
    add_doc(docstore, "big.txt", texts, dim=8)
    add_doc(docstore, "dup.txt", ["text 3"], dim=8)  # the same text in two documents
    asked = [_ehash(t) for t in texts] + [_ehash("text 3"), _ehash("never stored")]
    found = docstore.find_vectors(asked)
    assert len(found) == 700 and _ehash("never stored") not in found  # > 500: batched
    for t in ("text 0", "text 3", "text 699"):
        assert np.array_equal(found[_ehash(t)], unit_vector(t, 8))
    assert found[_ehash("text 3")].dtype == np.float32
    assert docstore.find_vectors([]) == {}


def test_vectors_and_get_chunks_in_batches_keep_the_order_asked(docstore, add_doc, unit_vector):
    texts = [f"chunk number {i}" for i in range(1200)]
    _, ids = add_doc(docstore, "big.txt", texts, dim=4)
    order = np.random.default_rng(0).permutation(len(ids))
    asked = np.asarray(ids, dtype=np.int64)[order]
    vecs = docstore.vectors(asked, 4)
    assert vecs.shape == (1200, 4)
    want = np.stack([unit_vector(texts[j], 4) for j in order])
    assert np.array_equal(vecs, want)
    rows = docstore.get_chunks(asked)
    assert len(rows) == 1200
    assert all(rows[int(i)].text == texts[j] for i, j in zip(asked, order, strict=True))
    assert docstore.get_chunks([10**9]) == {}  # unknown ids are simply absent
    assert docstore.vectors([], 4).shape == (0, 4)


def test_iter_texts_pages_through_all_rows(docstore, add_doc):
    texts = [f"t{i}" for i in range(25)]
    _, ids = add_doc(docstore, "a.txt", texts)
    batches = list(docstore.iter_texts(batch=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [row for b in batches for row in b] == list(zip(ids, texts, strict=True))


def test_neighbours_within_radius_of_the_same_document(docstore, add_doc):
    a, _ = add_doc(docstore, "a.txt", [f"a{i}" for i in range(6)])
    add_doc(docstore, "b.txt", [f"b{i}" for i in range(6)])
    assert [r.text for r in docstore.neighbours(a.doc_id, 3, 1)] == ["a2", "a3", "a4"]
    assert [r.text for r in docstore.neighbours(a.doc_id, 0, 2)] == ["a0", "a1", "a2"]
    assert [r.text for r in docstore.neighbours(a.doc_id, 5, 0)] == ["a5"]
    assert docstore.neighbours(a.doc_id, 40, 2) == []


def test_counts_report_duplicate_positions(docstore, add_doc):
    a, _ = add_doc(docstore, "a.txt", ["one", "two"])
    add_doc(docstore, "b.txt", ["three"])
    assert docstore.counts() == {"documents": 2, "chunks": 3, "duplicate_positions": 0}
    # a second chunk at position 0 of a.txt (what a double insert would leave behind)
    docstore.conn.execute(
        "INSERT INTO chunks(chunk_id, doc_id, position, text, metadata, n_tokens, embed_hash, vector) "
        "VALUES ('dup', ?, 0, 'again', '{}', 1, 'e', ?)", (a.doc_id, np.zeros(8, np.float32).tobytes()))
    assert docstore.counts() == {"documents": 2, "chunks": 4, "duplicate_positions": 1}


def test_catalog_rows(docstore, add_doc):
    a, a_ids = add_doc(docstore, "a.txt", ["one", "二"], metas=[{"lang": "en"}, {"lang": "zh"}])
    b, b_ids = add_doc(docstore, "b.txt", ["three"], metas=[{}])
    ids, doc_ids, langs = docstore.catalog_rows()
    assert ids.dtype == np.int64 and ids.tolist() == a_ids + b_ids
    assert doc_ids == [a.doc_id, a.doc_id, b.doc_id]
    assert langs == ["en", "zh", None]


def test_failed_label_update_leaves_no_open_transaction(tmp_path, add_doc):
    store = DocStore(tmp_path / "ds.sqlite")
    a, _ = add_doc(store, "a.txt", ["one"], groups=["hr"])
    with pytest.raises(TypeError):
        store.update_labels(a.doc_id, [object()], [])  # not JSON: fails inside the transaction
    assert not store.conn.in_transaction
    assert store.get_document(a.doc_id).groups == ["hr"] and store.version == 1
    other = DocStore(tmp_path / "ds.sqlite")  # the write lock was released: another writer proceeds
    other.conn.execute("PRAGMA busy_timeout=100")
    other.update_labels(a.doc_id, ["eng"], [])
    assert store.get_document(a.doc_id).groups == ["eng"]
    store.close()
    other.close()
