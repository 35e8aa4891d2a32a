"""The Ray ingest engine on a real local cluster: identical to a local ingest, incremental, crash-safe."""

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

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kb-assistant[ray]')")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ("which port does the VPN use?", "annual leave days", "widget 7-3 weight", "年假",
           "help desk hours")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster started by the test (2 CPUs), workers importing this checkout."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env},
             object_store_memory=256 * 2**20)
    yield
    ray.shutdown()


def _corpus(root: Path, write) -> Path:
    footer = "Confidential: Northwind Robotics internal use only."
    write(root / "vpn.md", "# VPN\n\nThe VPN server is vpn.northwind.example on port 1194.\n\n"
                           f"# Footer\n\n{footer}\n")
    write(root / "leave.txt", "Employees get 25 days of annual leave per year. " * 40)
    write(root / "sub" / "年假.txt", "年假为每年十五天。报销单须在消费后三十天内提交。", "gbk")
    write(root / "help.md", f"# Help desk\n\nThe help desk is open 8am to 6pm.\n\n# Footer\n\n{footer}\n")
    for i in range(12):
        write(root / "widgets" / f"w{i:02d}.txt",
              " ".join(f"Widget {i}-{j} weighs {i * 7 + j} grams." for j in range(30)))
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage garbage")
    (root / "fake.docx").write_bytes(b"this is not a zip")
    return root


def _rows(kb) -> tuple[list, list, dict[str, np.ndarray]]:
    conn = kb.docstore.conn
    docs = conn.execute("SELECT doc_id, path, content_hash, mtime, size, file_type, status, n_chunks, "
                        "groups, tags, parser FROM documents ORDER BY doc_id").fetchall()
    chunks = conn.execute("SELECT id, chunk_id, doc_id, position, text, metadata, n_tokens, embed_hash "
                          "FROM chunks ORDER BY id").fetchall()
    vectors = {cid: np.frombuffer(v, np.float32)
               for cid, v in conn.execute("SELECT chunk_id, vector FROM chunks")}
    return docs, chunks, vectors


def _failed(report) -> set[tuple[str, str]]:
    return {(Path(f.path).name, f.reason) for f in report.failed}


def _assert_same_kb(a, b) -> None:
    docs_a, chunks_a, vec_a = _rows(a)
    docs_b, chunks_b, vec_b = _rows(b)
    assert docs_a == docs_b and all(d[-1] for d in docs_a)  # parser versions recorded by both engines
    assert chunks_a == chunks_b  # row ids, chunk ids, texts, metadata, token counts, embed hashes
    assert vec_a.keys() == vec_b.keys()
    assert max(float(np.abs(vec_a[k] - vec_b[k]).max()) for k in vec_a) < 1e-5
    for query in QUERIES:
        hits_a, hits_b = a.search(query, k=5), b.search(query, k=5)
        assert [h.chunk_id for h in hits_a] == [h.chunk_id for h in hits_b]
        assert np.allclose([h.score for h in hits_a], [h.score for h in hits_b], atol=1e-4)
    assert a.verify()["ok"] and b.verify()["ok"]


def test_ray_ingest_is_identical_to_local(cluster, kb_factory, tmp_path, write):
    docs = _corpus(tmp_path / "docs", write)
    local, remote = kb_factory("local"), kb_factory("ray")
    rep_local = local.ingest(docs, groups=["staff"])
    rep_ray = remote.ingest(docs, groups=["staff"], engine="ray")
    assert sorted(rep_ray.added) == sorted(rep_local.added) and len(rep_ray.added) == 16
    assert rep_ray.chunks_added == rep_local.chunks_added
    # bad files: the same one-line reasons on the Ray path
    assert _failed(rep_ray) == _failed(rep_local)
    assert {n for n, _ in _failed(rep_ray)} == {"empty.txt", "binary.txt", "broken.pdf", "fake.docx"}
    assert all(r and "\n" not in r for _, r in _failed(rep_ray))
    assert rep_ray.timings["embed_s_workers"] > 0
    _assert_same_kb(local, remote)

    # re-ingest unchanged: all unchanged, nothing embedded (only the bad files are tried again)
    again = remote.ingest(docs, groups=["staff"], engine="ray")
    assert len(again.unchanged) == 16 and not again.added and not again.updated and again.chunks_added == 0
    assert again.timings["chunks_embedded"] == 0 and _failed(again) == _failed(rep_ray)
    (docs / "empty.txt").unlink(), (docs / "binary.txt").unlink()
    (docs / "broken.pdf").unlink(), (docs / "fake.docx").unlink()
    quiet = remote.ingest(docs, groups=["staff"], engine="ray")
    assert len(quiet.unchanged) == 16 and not quiet.failed and "embed_s_workers" not in quiet.timings

    # a changed and a deleted file: replaced exactly and pruned, as locally
    write(docs / "widgets" / "w03.txt", "Widget 3 was redesigned: it now weighs 99 grams.")
    (docs / "widgets" / "w05.txt").unlink()
    for kb, engine in ((local, "local"), (remote, "ray")):
        rep = kb.ingest(docs, groups=["staff"], engine=engine, prune=True)
        assert [Path(p).name for p in rep.updated] == ["w03.txt"]
        assert [Path(p).name for p in rep.removed] == ["w05.txt"]
    _assert_same_kb(local, remote)


def test_killed_worker_is_retried_without_loss_or_duplicates(cluster, kb_factory, tmp_path, write):
    import threading

    import psutil

    docs = tmp_path / "docs"
    for i in range(24):
        write(docs / f"w{i:02d}.txt", " ".join(f"Widget {i}-{j} weighs {i * 7 + j} g." for j in range(30)))
    remote = kb_factory("ray", config={"ingest": {"embed_batch_chunks": 2}})
    db = remote.path / "docstore.sqlite3"
    killed: list[int] = []

    def kill_an_embedding_actor() -> None:
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            if _doc_count(db) >= 2:
                for proc in psutil.Process().children(recursive=True):
                    try:
                        if "MapWorker" in " ".join(proc.cmdline()):
                            proc.kill()
                            killed.append(proc.pid)
                            return
                    except psutil.Error:
                        continue
            time.sleep(0.01)

    killer = threading.Thread(target=kill_an_embedding_actor, daemon=True)
    killer.start()
    report = remote.ingest(docs, engine="ray")
    killer.join()
    assert killed, "the kill should land while the ingest was running"
    assert len(report.added) == 24 and not report.failed
    local = kb_factory("local", config={"ingest": {"embed_batch_chunks": 2}})
    local.ingest(docs)
    _assert_same_kb(local, remote)  # nothing lost, nothing committed twice


def _doc_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_driver_loses_nothing_and_duplicates_nothing(cluster, tmp_path):
    from kb_assistant import KnowledgeBase
    from kb_assistant.config import KBConfig

    docs = tmp_path / "docs"
    docs.mkdir()
    n_files = 30
    for i in range(n_files):
        facts = (f"Section {i} fact {j}: the widget {i}-{j} weighs {i * 7 + j} grams." for j in range(12))
        (docs / f"doc_{i:03d}.txt").write_text(" ".join(facts))
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    # small embedding batches, checkpoint on every commit: the kill lands between commits and saves
    cfg = KBConfig().merged({"ingest": {"embed_batch_chunks": 4, "checkpoint_seconds": 0.0}})
    cfg.save(kb_dir / "config.toml")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "kb_assistant.cli", "ingest", str(docs), "--kb", str(kb_dir), "--engine",
           "ray", "--json", "-q"]
    # its own session: the Ray cluster it starts is in its process group, cleaned up after the kill
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    db = kb_dir / "docstore.sqlite3"
    deadline = time.monotonic() + 300
    killed = False
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _doc_count(db) >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the Ray processes the killed driver started
        except ProcessLookupError:
            pass
    assert killed, f"ingest ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    committed = _doc_count(db)
    assert 3 <= committed < n_files

    kb = KnowledgeBase(kb_dir)
    kb.indexes.open()
    assert np.array_equal(np.sort(kb.dense.ids()), kb.docstore.chunk_ids())
    assert kb.docstore.counts()["duplicate_positions"] == 0
    assert kb.verify()["ok"]
    before = {d["doc_id"]: d["ingested_at"] for d in kb.documents()}

    report = kb.ingest(docs, engine="ray")  # resume: the committed files are unchanged, the rest added
    assert len(report.unchanged) == committed and len(report.added) == n_files - committed
    assert not report.failed
    assert all(before[d["doc_id"]] == d["ingested_at"] for d in kb.documents() if d["doc_id"] in before)
    check = kb.verify()
    assert check["ok"]
    clean = KnowledgeBase(tmp_path / "clean")
    clean.ingest(docs)
    assert check["chunks"] == clean.verify()["chunks"]  # nothing missing, nothing doubled
    assert sorted(r[1] for r in _rows(kb)[1]) == sorted(r[1] for r in _rows(clean)[1])
    assert kb.search("widget 17-3 weight", k=1)[0].source.endswith("doc_017.txt")
    kb.close()
    clean.close()
