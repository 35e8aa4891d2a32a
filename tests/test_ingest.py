"""Incremental ingest, exact replacement, delete and prune, with the real default embedder."""

from __future__ import annotations

import numpy as np
import pytest


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


def test_parse_queue_is_bounded_in_bytes():
    import threading

    from kb_assistant.ingest import _Budget

    budget = _Budget(100)
    assert budget.acquire(60)
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.acquire(60), got.set()))
    waiter.start()
    assert not got.wait(0.2)  # 60 + 60 > 100: the parser waits for the writer
    budget.release(60)
    assert got.wait(5)
    waiter.join()
    budget.release(60)
    assert budget.acquire(500) and budget.used == 500  # one larger file passes, alone
    budget.close()
    assert not budget.acquire(1)  # closed (the run ended): the parser stops at once


@pytest.mark.slow
def test_walk_is_streamed_not_listed(kb_factory, tmp_path, write, monkeypatch):
    import kb_assistant.ingest as ingest

    docs = tmp_path / "docs"
    for i in range(90):
        write(docs / f"f{i:03d}.txt", f"File number {i} says hello.")
    walked = []
    at_first_commit = []
    real_walk, real_commit = ingest.walk, ingest.Writer.commit

    def walk(*args, **kwargs):
        for entry in real_walk(*args, **kwargs):
            walked.append(entry)
            yield entry

    def commit(self, batch, vectors=None):
        if batch and not at_first_commit:
            at_first_commit.append(len(walked))
        return real_commit(self, batch, vectors)

    monkeypatch.setattr(ingest, "walk", walk)
    monkeypatch.setattr(ingest.Writer, "commit", commit)
    kb = kb_factory(config={"ingest": {"embed_batch_chunks": 1}})
    report = kb.ingest(docs)
    assert len(report.added) == 90 and len(walked) == 90
    # the parser ran at most the queue's 64 files (plus the ones in hand) ahead of the first commit
    assert at_first_commit[0] < 75
    assert kb.verify()["ok"]


def test_engine_choice_is_validated(kb_factory, tmp_path, write, monkeypatch):
    import sys

    import pytest

    from kb_assistant.errors import ConfigError, KBError
    from kb_assistant.ingest_ray import RayOptions

    docs = tmp_path / "docs"
    write(docs / "a.txt", "Some text.")
    kb = kb_factory()
    with pytest.raises(ConfigError, match="engine must be one of 'local', 'ray'"):
        kb.ingest(docs, engine="spark")
    with pytest.raises(ConfigError, match="ray_options need engine='ray'"):
        kb.ingest(docs, ray_options={"workers": 2})
    with pytest.raises(ConfigError, match="workers must be in"):
        RayOptions.from_dict({"workers": 0})
    with pytest.raises(ConfigError, match="unknown RayOptions setting"):
        RayOptions.from_dict({"nodes": 3})
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(KBError, match=r"pip install 'kb-assistant\[ray\]'"):
        kb.ingest(docs, engine="ray")
    assert not kb.documents()  # nothing half-done
