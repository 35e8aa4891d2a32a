"""Access control and metadata filters: readable(), doc_matches(), check_filters(), Catalog.allowed_ids."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kb_assistant.errors import ConfigError
from kb_assistant.store.catalog import FILTER_KEYS, Catalog, check_filters, doc_matches, readable
from kb_assistant.store.docstore import DocumentRecord

JAN_2024 = 1704067200.0  # 2024-01-01T00:00:00Z


def test_readable_rules():
    assert readable([], None) and readable(["hr"], None)  # None: trusted local caller
    assert readable([], []) and not readable(["hr"], [])  # []: public documents only
    assert readable(["hr", "eng"], ["eng"]) and not readable(["hr"], ["eng", "ops"])
    assert readable([], ["eng"])  # public documents are readable by everyone


def _doc(**kw) -> DocumentRecord:
    base = {"doc_id": "d1", "path": "/srv/docs/hr/policy.pdf", "content_hash": "h", "mtime": JAN_2024,
            "size": 1, "file_type": "pdf", "tags": ["policy", "2024"]}
    return DocumentRecord(**{**base, **kw})


@pytest.mark.parametrize("filters, expected", [
    (None, True), ({}, True),
    ({"source": "*.pdf"}, True), ({"source": "hr/policy.pdf"}, True), ({"source": "*.docx"}, False),
    ({"source": ["*.docx", "/srv/docs/hr/*"]}, True), ({"source": "policy"}, False),
    ({"file_type": "pdf"}, True), ({"file_type": ["md", "pdf"]}, True), ({"file_type": "md"}, False),
    ({"tags": "policy"}, True), ({"tags": ["x", "2024"]}, True), ({"tags": ["x"]}, False),
    ({"mtime_after": JAN_2024 - 1}, True), ({"mtime_after": JAN_2024 + 1}, False),
    ({"mtime_before": JAN_2024}, True), ({"mtime_before": JAN_2024 - 1}, False),
    ({"mtime_after": "2023-12-31T23:59:00+00:00"}, True),
    ({"mtime_before": "2023-12-31T23:59:00+00:00"}, False),
    ({"mtime_after": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}, False),
    ({"doc_id": "d1"}, True), ({"doc_id": ["d2", "d1"]}, True), ({"doc_id": "d2"}, False),
    ({"file_type": "pdf", "tags": "policy", "doc_id": "d2"}, False),  # all keys must hold
])
def test_doc_matches_each_filter_key(filters, expected):
    assert doc_matches(_doc(), filters) is expected


def test_doc_matches_bad_time_is_a_config_error():
    with pytest.raises(ConfigError, match="epoch seconds or ISO 8601"):
        doc_matches(_doc(), {"mtime_after": "last tuesday"})


def test_check_filters_names_the_allowed_keys():
    check_filters(None)
    check_filters({k: "x" for k in FILTER_KEYS})
    with pytest.raises(ConfigError) as err:
        check_filters({"sourc": "*.pdf", "lang": "en", "author": "me"})
    msg = str(err.value)
    assert "author, sourc" in msg and "allowed: " + ", ".join(FILTER_KEYS) in msg


@pytest.fixture
def cat(docstore, add_doc):
    """public.md (en + zh chunks), hr.pdf (group hr, tag policy), eng.md (group eng) and their ids."""
    ids = {
        "public": add_doc(docstore, "public.md", ["hello", "你好"], file_type="md",
                          metas=[{"lang": "en"}, {"lang": "zh"}])[1],
        "hr": add_doc(docstore, "hr.pdf", ["salary", "leave"], groups=["hr"], tags=["policy"],
                      file_type="pdf")[1],
        "eng": add_doc(docstore, "eng.md", ["deploy"], groups=["eng"], file_type="md", metas=[{}])[1],
    }
    return Catalog(docstore), ids


def test_allowed_ids_by_groups_and_filters(cat):
    catalog, ids = cat
    assert catalog.allowed_ids(None, None) is None  # trusted, unfiltered: no restriction at all
    assert catalog.allowed_ids([], None).tolist() == ids["public"]
    assert catalog.allowed_ids(["hr"], None).tolist() == ids["public"] + ids["hr"]
    assert catalog.allowed_ids(None, {"file_type": "md"}).tolist() == ids["public"] + ids["eng"]
    assert catalog.allowed_ids(["hr"], {"tags": "policy"}).tolist() == ids["hr"]
    assert catalog.allowed_ids(["eng"], {"tags": "policy"}).tolist() == []  # the filter cannot widen
    # lang is a chunk-level key; a chunk without lang counts as English
    assert catalog.allowed_ids(None, {"lang": "zh"}).tolist() == [ids["public"][1]]
    assert catalog.allowed_ids(["eng"], {"lang": "en"}).tolist() == [ids["public"][0]] + ids["eng"]
    assert catalog.allowed_ids(None, {"lang": "en"}).dtype == np.int64
    with pytest.raises(ConfigError, match="unknown search filter"):
        catalog.allowed_ids(["hr"], {"colour": "red"})


def test_allowed_ids_cached_per_version(cat, docstore):
    catalog, ids = cat
    first = catalog.allowed_ids(["eng"], None)
    assert catalog.allowed_ids(["eng"], None) is first  # same version: the cached array
    assert catalog.allowed_ids(["eng", "hr"], None) is catalog.allowed_ids(["hr", "eng"], None)
    eng_doc = docstore.documents()[0]
    assert eng_doc.path == "eng.md"
    docstore.update_labels(eng_doc.doc_id, ["ops"], [])  # a label change bumps the version
    after = catalog.allowed_ids(["eng"], None)
    assert after is not first and after.tolist() == ids["public"]
    assert catalog.allowed_ids(["ops"], None).tolist() == ids["public"] + ids["eng"]
    assert catalog.document(eng_doc.doc_id).groups == ["ops"]


def test_a_change_seen_through_another_connection_invalidates(cat, docstore, tmp_path, add_doc):
    from kb_assistant.store.docstore import DocStore

    catalog, ids = cat
    before = catalog.allowed_ids([], None)
    writer = DocStore(docstore.path)  # e.g. `kb ingest` in another process
    _, new = add_doc(writer, "more.md", ["news"])
    assert catalog.allowed_ids([], None).tolist() == before.tolist() + new
    writer.close()


def test_many_distinct_queries_stay_correct(cat):
    catalog, ids = cat
    for i in range(80):  # past the per-version cache bound
        assert catalog.allowed_ids([f"g{i}"], None).tolist() == ids["public"]
    assert catalog.allowed_ids(["hr"], None).tolist() == ids["public"] + ids["hr"]


def test_orphan_chunks_are_never_allowed(cat, docstore):
    catalog, ids = cat
    docstore.conn.execute("PRAGMA foreign_keys=OFF")  # a chunk whose document row is gone
    docstore.conn.execute(
        "INSERT INTO chunks(chunk_id, doc_id, position, text, metadata, n_tokens, embed_hash, vector) "
        "VALUES ('orphan', 'no-such-doc', 0, 'x', '{\"lang\": \"en\"}', 1, 'e', x'00')")
    docstore.conn.execute("PRAGMA foreign_keys=ON")
    docstore.set_meta("version", str(docstore.version + 1))
    orphan = int(docstore.conn.execute("SELECT id FROM chunks WHERE chunk_id='orphan'").fetchone()[0])
    for groups, filters in (([], None), (["hr", "eng"], None), (None, {"lang": "en"}),
                            (["hr"], {"source": "*"})):
        assert orphan not in catalog.allowed_ids(groups, filters).tolist()
    assert catalog.document("no-such-doc") is None
