"""Repair (#16 item 5): derived files that are missing, truncated or corrupt are rebuilt from the docstore
on open with a warning; ``verify`` reports without touching anything; ``repair`` rebuilds on demand; a
missing or damaged docstore is a one-line error, never a silently empty knowledge base."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest

from kb_assistant import KnowledgeBase
from kb_assistant.errors import KBError

QUESTION = "How many days of annual leave do employees get?"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("repair")
    docs = root / "docs"
    docs.mkdir()
    (docs / "leave.txt").write_text("Employees get 25 days of annual leave per year. Ask HR.")
    (docs / "vpn.md").write_text("# VPN\n\nThe VPN server listens on port 1194. Sessions end at 10 pm.\n")
    (docs / "printers.txt").write_text("The printer on floor 3 is named NW-PRN-03. Toner is in room 301.")
    kb = KnowledgeBase(root / "kb")
    assert kb.ingest(docs, show_progress=False).ok
    kb.close()
    return root / "kb"


@pytest.fixture
def kb_copy(base, tmp_path):
    target = tmp_path / "kb"
    shutil.copytree(base, target)
    return target


def _damage(path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        raise ValueError(how)


@pytest.mark.parametrize("member", ["dense.faiss", "sparse/bm25.npz"])
@pytest.mark.parametrize("how", ["missing", "truncated", "empty", "random"])
def test_a_damaged_index_is_rebuilt_on_open(kb_copy, member, how, caplog):
    _damage(kb_copy / member, how)
    with caplog.at_level(logging.WARNING, logger="kb_assistant"):
        kb = KnowledgeBase(kb_copy, create=False)
        hits = kb.search(QUESTION, k=1)
    assert "25 days" in hits[0].text
    if how != "missing":
        assert f"{member} is unreadable" in caplog.text and "rebuilding it from the docstore" in caplog.text
    kb.close()
    again = KnowledgeBase(kb_copy, create=False)
    check = again.verify()
    assert check["ok"], check  # rebuilt and saved: the next open finds it whole
    assert check["dense_file"] == check["sparse_file"] == "ok"
    again.close()


def test_an_index_holding_an_id_twice_is_rebuilt(kb_copy, caplog):
    import faiss

    path = kb_copy / "dense.faiss"
    index = faiss.read_index(str(path))
    ids = faiss.vector_to_array(index.id_map)
    index.add_with_ids(np.ones((1, index.d), np.float32), ids[:1].astype(np.int64))
    faiss.write_index(index, str(path))
    kb = KnowledgeBase(kb_copy, create=False)
    assert kb.verify()["duplicate_index_ids"] == 1
    with caplog.at_level(logging.WARNING, logger="kb_assistant"):
        kb.indexes.open()
    assert "1 ids held twice" in caplog.text
    assert kb.verify()["ok"]
    kb.close()


def test_ingest_after_damage_repairs_too(kb_copy, tmp_path):
    _damage(kb_copy / "dense.faiss", "random")
    _damage(kb_copy / "sparse/bm25.npz", "truncated")
    (tmp_path / "new.txt").write_text("The canteen opens at 11:30 on weekdays.")
    kb = KnowledgeBase(kb_copy, create=False)
    report = kb.ingest([tmp_path / "new.txt"], show_progress=False)
    assert report.ok and kb.verify()["ok"]
    assert "11:30" in kb.search("When does the canteen open?", k=1)[0].text
    kb.close()


def test_temp_files_of_a_killed_save_are_removed_by_the_next_writer(kb_copy, tmp_path):
    """A writer SIGKILLed mid-save leaves ``.dense.faiss.XXXXXXXX.tmp`` (as large as the index): the next
    writer removes those not touched for ten minutes; a fresh one (a save in progress) stays."""
    stale = [kb_copy / ".dense.faiss.ab12cd34.tmp", kb_copy / "sparse" / ".bm25.npz.x_9yz8w7.tmp"]
    fresh = kb_copy / ".dense.faiss.fresh123.tmp"
    for path in [*stale, fresh]:
        path.write_bytes(b"half an index")
    for path in stale:
        os.utime(path, (path.stat().st_atime - 3600, path.stat().st_mtime - 3600))
    other = kb_copy / "notes.tmp"  # not an atomic_path temp name: never touched
    other.write_text("mine")
    os.utime(other, (0, 0))
    (tmp_path / "new.txt").write_text("The canteen opens at 11:30 on weekdays.")
    kb = KnowledgeBase(kb_copy, create=False)
    assert kb.ingest([tmp_path / "new.txt"], show_progress=False).ok
    kb.close()
    assert not any(p.exists() for p in stale) and fresh.exists() and other.exists()


def test_verify_reports_without_repairing_and_repair_rebuilds(kb_copy):
    _damage(kb_copy / "dense.faiss", "random")
    before = (kb_copy / "dense.faiss").read_bytes()
    (kb_copy / "calibration.json").write_text("[1, 2")
    kb = KnowledgeBase(kb_copy, create=False)
    check = kb.verify()
    assert not check["ok"] and check["dense_file"].startswith("unreadable")
    assert check["calibration"].startswith("unreadable") and check["docstore"] == "ok"
    assert (kb_copy / "dense.faiss").read_bytes() == before  # verify never writes
    result = kb.repair()
    assert result["ok"] and result["rebuilt"]["dense"] == result["chunks"] > 0
    assert not (kb_copy / "calibration.json").exists()  # the default calibration applies again
    assert "25 days" in kb.search(QUESTION, k=1)[0].text
    kb.close()


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_lost_docstore_is_an_error_not_an_empty_knowledge_base(kb_copy, how):
    _damage(kb_copy / "docstore.sqlite3", how)
    for extra in ("docstore.sqlite3-wal", "docstore.sqlite3-shm"):
        (kb_copy / extra).unlink(missing_ok=True)
    for create in (False, True):  # even the library's "open or create" refuses
        with pytest.raises(KBError, match=r"docstore\.sqlite3 is missing or empty although documents were "
                                          r"ingested; restore it from a backup"):
            KnowledgeBase(kb_copy, create=create)
    assert not (kb_copy / "docstore.sqlite3").exists() or how == "empty"


@pytest.mark.parametrize("how", ["truncated", "random"])
def test_a_damaged_docstore_is_one_line(kb_copy, how):
    os.sync()
    _damage(kb_copy / "docstore.sqlite3", how)
    for extra in ("docstore.sqlite3-wal", "docstore.sqlite3-shm"):
        (kb_copy / extra).unlink(missing_ok=True)
    with pytest.raises(KBError) as err:
        KnowledgeBase(kb_copy, create=False)
    msg = str(err.value)
    assert "the docstore is damaged (" in msg and "restore it from a backup" in msg and "\n" not in msg


def test_open_refuses_what_is_not_a_knowledge_base(tmp_path):
    with pytest.raises(KBError, match=r"does not exist: create it with `kb init`"):
        KnowledgeBase(tmp_path / "typo", create=False)
    assert not (tmp_path / "typo").exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a knowledge base")
    with pytest.raises(KBError, match=r"is not a knowledge base \(no docstore\.sqlite3\)"):
        KnowledgeBase(folder, create=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing written
    with pytest.raises(KBError, match=r"is a file, not a knowledge base directory"):
        KnowledgeBase(folder / "notes.txt")
    kb = KnowledgeBase(tmp_path / "new")  # the library's default still creates
    kb.close()
    KnowledgeBase(tmp_path / "new", create=False).close()  # and then it is one
