"""Incremental ingest, exact replacement, delete and prune, with the real default embedder."""

from __future__ import annotations

import numpy as np


def _texts(kb):
    return sorted(t for batch in kb.docstore.iter_texts() for _, t in batch)


def test_ingest_search_and_report(kb_factory, tmp_path, write):
    docs = tmp_path / "docs"
    write(docs / "vpn.md", "# VPN\n\nThe VPN server is vpn.northwind.example on port 1194.\n")
    write(docs / "leave.txt", "Employees get 25 days of annual leave per year.")
    write(docs / "sub dir" / "年假 政策.txt", "年假为每年十五天。报销单须在消费后三十天内提交。", "gbk")
    kb = kb_factory()
    report = kb.ingest(docs)
    assert len(report.added) == 3 and not report.failed and report.chunks_added == 3
    hits = kb.search("which port does the VPN use?", k=2)
    assert hits[0].source.endswith("vpn.md") and "1194" in hits[0].text
    assert hits[0].page is None and hits[0].chunk_id and 0 < hits[0].score <= 1
    assert kb.verify()["ok"]


def test_reingest_unchanged_is_noop_and_change_replaces_exactly(kb_factory, tmp_path, write):
    docs = tmp_path / "docs"
    f = write(docs / "a.txt", "Alpha policy. " * 200)
    write(docs / "b.txt", "Bravo manual text.")
    kb = kb_factory()
    kb.ingest(docs)
    version = kb.version
    before = _texts(kb)
    again = kb.ingest(docs)
    assert again.unchanged and not again.added and not again.updated and again.chunks_added == 0
    assert kb.version == version and _texts(kb) == before

    write(f, "Charlie replaced everything.")
    changed = kb.ingest(docs)
    assert [p.endswith("a.txt") for p in changed.updated] == [True]
    texts = _texts(kb)
    assert not any("Alpha" in t for t in texts)
    assert texts.count("Charlie replaced everything.") == 1
    assert not any("Alpha" in h.text for h in kb.search("Alpha policy", k=10))
    assert kb.verify()["ok"]


def test_delete_and_prune_really_remove(kb_factory, tmp_path, write):
    docs = tmp_path / "docs"
    write(docs / "secret.txt", "The launch code is ZEBRA-7741.")
    gone = write(docs / "old.txt", "Obsolete procedure for fax machines.")
    write(docs / "keep.txt", "Keep this document about printers.")
    kb = kb_factory()
    kb.ingest(docs)
    assert kb.delete(docs / "secret.txt") == 1
    assert all("ZEBRA" not in h.text for h in kb.search("launch code ZEBRA-7741", k=10))
    (docs / "secret.txt").unlink()
    gone.unlink()
    report = kb.ingest(docs, prune=True)
    assert [p.endswith("old.txt") for p in report.removed] == [True]
    assert [d["path"].endswith("keep.txt") for d in kb.documents()] == [True]
    assert kb.verify()["ok"]
    # survives reopening: nothing deleted comes back
    kb.close()
    kb2 = kb_factory()
    assert all("fax" not in h.text for h in kb2.search("fax machines", k=10))


def test_repeated_boilerplate_is_embedded_once(kb_factory, tmp_path, write):
    docs = tmp_path / "docs"
    footer = "Confidential: Northwind Robotics internal use only."
    for i in range(3):
        write(docs / f"d{i}.md", f"# Doc {i}\n\nUnique body number {i}.\n\n# Footer\n\n{footer}\n")
    kb = kb_factory()
    kb.ingest(docs)
    rows = kb.docstore.conn.execute("SELECT embed_hash, vector FROM chunks").fetchall()
    by_hash: dict[str, list[bytes]] = {}
    for h, v in rows:
        by_hash.setdefault(h, []).append(v)
    assert len(rows) >= 3
    for vectors in by_hash.values():  # identical embedded text -> identical stored vector
        assert all(np.array_equal(np.frombuffer(v, np.float32), np.frombuffer(vectors[0], np.float32))
                   for v in vectors)


def test_bad_files_do_not_stop_the_batch(kb_factory, tmp_path, write):
    docs = tmp_path / "docs"
    write(docs / "good.txt", "Good document about the help desk hours: 8am to 6pm.")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage garbage")
    (docs / "fake.docx").write_bytes(b"this is not a zip")
    kb = kb_factory()
    report = kb.ingest(docs)
    assert [p.endswith("good.txt") for p in report.added] == [True]
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in report.failed}
    assert set(reasons) == {"empty.txt", "binary.txt", "broken.pdf", "fake.docx"}
    assert all(r and "\n" not in r for r in reasons.values())
    assert kb.verify()["ok"]
    assert kb.search("help desk hours", k=1)[0].source.endswith("good.txt")


def test_index_made_by_other_model_gives_clear_error(kb_factory, tmp_path, write):
    import json

    import pytest

    from kb_assistant.errors import IndexVersionError

    docs = tmp_path / "docs"
    write(docs / "a.txt", "Some text.")
    kb = kb_factory()
    kb.ingest(docs)
    kb.close()
    manifest = tmp_path / "kb" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["embedding"]["name"] = "st:some-other-model"
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexVersionError, match="built with embedding model"):
        kb_factory()
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexVersionError, match="upgrade kb-assistant"):
        kb_factory()
