"""SIGKILL `kb ingest` at several points; the knowledge base must reopen consistent and re-ingest cleanly."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

N_FILES = 40


def _make_corpus(root: Path) -> None:
    root.mkdir()
    for i in range(N_FILES):
        body = " ".join(f"Section {i} fact {j}: the widget {i}-{j} weighs {i * 7 + j} grams."
                        for j in range(12))
        (root / f"doc_{i:03d}.txt").write_text(body)


def _doc_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def _run_and_kill(docs: Path, kb_dir: Path, kill_at_docs: int) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "kb_assistant.cli", "ingest", str(docs), "--kb", str(kb_dir), "--json", "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = kb_dir / "docstore.sqlite3"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if _doc_count(db) >= kill_at_docs:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    return proc.returncode


@pytest.mark.slow
def test_sigkill_during_ingest_never_corrupts(tmp_path):
    from kb_assistant import KnowledgeBase
    from kb_assistant.config import KBConfig

    docs = tmp_path / "docs"
    _make_corpus(docs)
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    # small embedding batches and constant index checkpoints: kills land mid-commit and mid-save
    cfg = KBConfig().merged({"ingest": {"embed_batch_chunks": 3, "checkpoint_seconds": 0.0}})
    cfg.save(kb_dir / "config.toml")

    killed = 0
    for point in (1, 8, 17, 29):
        code = _run_and_kill(docs, kb_dir, point)
        killed += code == -signal.SIGKILL
        kb = KnowledgeBase(kb_dir)
        kb.indexes.open()
        store_ids = kb.docstore.chunk_ids()
        # opening repairs the derived index from the docstore: every FAISS id has its row and vice versa
        assert np.array_equal(np.sort(kb.dense.ids()), store_ids)
        assert kb.docstore.counts()["duplicate_positions"] == 0
        check = kb.verify()
        assert check["ok"], check
        kb.close()
    assert killed >= 2, "the kills should land while ingest was running"

    kb = KnowledgeBase(kb_dir)
    report = kb.ingest(docs)
    assert not report.failed
    assert len(kb.documents()) == N_FILES
    assert all(d["n_chunks"] > 0 for d in kb.documents())
    stats = kb.verify()
    assert stats["ok"] and stats["chunks"] == stats["index_ids"]

    clean = KnowledgeBase(tmp_path / "clean")
    clean.ingest(docs)
    assert stats["chunks"] == clean.verify()["chunks"]  # nothing missing, nothing doubled
    hit = kb.search("widget 17-3 weight", k=1)[0]
    assert hit.source.endswith("doc_017.txt")
