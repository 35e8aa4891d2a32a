"""SIGKILL at random points of an ingest and of a server-side upload; the knowledge base must reopen
consistent every time and resume without duplicates (#16 item 9).

``KB_CRASH_KILLS`` (default 100, the issue's figure) kills are split three to one between ``kb ingest``
subprocesses and a real ``kb serve`` subprocess killed while it ingests an upload. A kill lands after a
random number of file commits (read from the docstore's change counter) plus a random few milliseconds,
so it hits commits, index checkpoints and saves; after each kill the knowledge base is opened in this
process and checked (every FAISS id has its row and vice versa, no chunk position twice, ``verify`` ok),
and the next run resumes it. The ingest runs also edit files once everything is in, so updates
(replace-in-place) are killed too.

``KB_CRASH_KILLS`` defaults to 100, and to 20 when ``CI=true`` (the CI suite has 20 minutes on two cores;
100 kills take about four minutes there). ``KB_CRASH_JSON=path`` writes the campaign's figures (kills,
inconsistent knowledge bases, duplicates after resume, wall time) as JSON:
``benchmarks/results/crash_campaign.json`` is the 100-kill run (``benchmarks/crash_campaign.py``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

N_FILES = 40
KILLS = int(os.environ.get("KB_CRASH_KILLS", "20" if os.environ.get("CI") == "true" else "100"))
UPLOAD_SHARE = 0.25
#: where the ``kb serve`` processes write their logs (stdout and stderr); None: /dev/null
SERVER_LOG = Path(os.environ["KB_CRASH_SERVER_LOG"]) if os.environ.get("KB_CRASH_SERVER_LOG") else None


def _body(i: int, version: int = 0) -> str:
    return " ".join(f"Section {i} fact {j}: the widget {i}-{j} weighs {i * 7 + j + version} grams."
                    for j in range(12))


def _make_corpus(root: Path) -> None:
    root.mkdir()
    for i in range(N_FILES):
        (root / f"doc_{i:03d}.txt").write_text(_body(i))


def _version(db: Path) -> int:
    """The docstore's change counter (one per committed file), read without locking the writer."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0


def _kill_after(proc: Any, db: Path, commits: int, extra_s: float, start: int | None = None,
                timeout: float = 120) -> bool:
    """SIGKILL ``proc`` ``extra_s`` after the docstore counter moved ``commits`` times past ``start``
    (default: now); True if it was still working then, False if it ended first or never got there
    within ``timeout`` (then it is killed anyway, so a run that hangs cannot hang the campaign)."""
    start = _version(db) if start is None else start
    deadline = time.monotonic() + timeout
    landed = False
    while proc.poll() is None and time.monotonic() < deadline:
        if _version(db) - start >= commits:
            time.sleep(extra_s)
            landed = proc.poll() is None
            break
        time.sleep(0.003)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return landed and proc.returncode == -signal.SIGKILL


def _check(kb_dir: Path, tally: dict[str, int]) -> None:
    """Open the killed knowledge base in this process and count what is wrong with it in ``tally``:
    ``repaired`` (saved indexes behind the docstore, rebuilt on open: expected after a kill),
    ``inconsistent`` (anything still wrong once opened), ``duplicates`` (a path or chunk position twice)."""
    from kb_assistant import KnowledgeBase

    kb = KnowledgeBase(kb_dir, create=False)
    try:
        tally["repaired"] += not kb.verify()["ok"]  # the saved files, before opening repairs them
        kb.indexes.open()
        store_ids = kb.docstore.chunk_ids()
        paths = [d["path"] for d in kb.documents()]
        duplicates = kb.docstore.counts()["duplicate_positions"] + len(paths) - len(set(paths))
        # opening repairs the derived indexes from the docstore: every FAISS id has its row and vice versa
        consistent = np.array_equal(np.sort(kb.dense.ids()), store_ids) and kb.verify()["ok"]
        tally["duplicates"] += duplicates
        tally["inconsistent"] += not consistent or duplicates > 0
        tally["checked"] += 1
    finally:
        kb.close()


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


#: a process that has imported the package and loaded the embedder once, and forks a ``kb`` command per
#: request: a real ingest or server process, killed for real, without paying the imports 100 times
_FORK_SERVER = """
import json, os, sys
from kb_assistant.cli import main
from kb_assistant.config import EmbeddingConfig
from kb_assistant.embedding import get_embedder
import tqdm.std
emb = get_embedder(EmbeddingConfig())
emb.embed_documents(["warm up"]), emb.embed_query("warm up")  # the model loads here, not per child

def fresh_tqdm_lock(cls=tqdm.std.tqdm):
    # tqdm's lock is a process-shared semaphore: a child killed while holding it would hang every
    # later child; each child gets a lock of its own, as separate processes do
    cls.__dict__.get("_lock") and delattr(cls, "_lock")
    for sub in cls.__subclasses__():
        fresh_tqdm_lock(sub)

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        tqdm.std.TqdmDefaultWriteLock.mp_lock = None
        fresh_tqdm_lock()
        out = os.open(request["log"] or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(out, 1); os.dup2(out, 2)
        os._exit(main(request["argv"]))
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""


class Forked:
    """A ``kb`` command forked by the fork server: ``poll()``, ``wait()``, ``returncode``, ``pid``."""

    def __init__(self, server: subprocess.Popen, argv: list[str], log: Path | None = None) -> None:
        self.server = server
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps({"argv": argv, "log": str(log) if log else None}) + "\n")
        server.stdin.flush()
        self.pid = int(server.stdout.readline())
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                with open(f"/proc/{self.pid}/stat") as fh:
                    if fh.read().split(")")[-1].split()[0] == "Z":  # exited, not yet reaped
                        return self.wait()
            except (ProcessLookupError, FileNotFoundError):
                return self.wait()
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            assert self.server.stdout is not None
            self.returncode = int(self.server.stdout.readline())
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.wait()


def _fork_server() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _FORK_SERVER], env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)


def _ingest_kills(server: subprocess.Popen, docs: Path, kb_dir: Path, n: int, rng: random.Random,
                  tally: dict[str, int]) -> int:
    """Run ``kb ingest`` until ``n`` runs were killed mid-work (at most ``3 n`` runs); returns the runs."""
    killed = edits = runs = 0
    db = kb_dir / "docstore.sqlite3"
    argv = ["ingest", str(docs), "--kb", str(kb_dir), "--json", "-q"]
    while killed < n and runs < 3 * n:
        runs += 1
        proc = Forked(server, argv)
        if _kill_after(proc, db, rng.randint(1, 6), rng.random() * 0.05):
            killed += 1
        else:  # the run finished first: edit a few files so the next one has updates to be killed in
            edits += 1
            for i in rng.sample(range(N_FILES), 4):
                (docs / f"doc_{i:03d}.txt").write_text(_body(i, edits))
        _check(kb_dir, tally)
    tally["ingest_kills"] = killed
    return runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _upload_kills(server: subprocess.Popen, kb_dir: Path, n: int, rng: random.Random,
                  tally: dict[str, int]) -> int:
    """Start ``kb serve``, upload six files, kill the server after a few of their commits; until ``n``
    kills landed mid-upload (at most ``3 n`` rounds). Returns the rounds."""
    import threading

    httpx = pytest.importorskip("httpx")
    killed = round_ = 0
    db = kb_dir / "docstore.sqlite3"
    while killed < n and round_ < 3 * n:
        round_ += 1
        port = _free_port()
        proc = Forked(server, ["serve", "--kb", str(kb_dir), "--port", str(port)], SERVER_LOG)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        files = [("files", (f"up_{i:02d}.txt", _body(100 + i, round_).encode()))
                 for i in rng.sample(range(12), 6)]
        statuses: list[int | str] = []
        start = _version(db)  # before the upload starts: none of its commits is missed
        sender = threading.Thread(target=_upload, args=(httpx, url, files, statuses))
        sender.start()
        if _kill_after(proc, db, rng.randint(1, 5), rng.random() * 0.05, start):
            killed += 1
        sender.join()
        for status in statuses:  # 201 when the upload finished before the kill
            tally[f"upload_{status}"] = tally.get(f"upload_{status}", 0) + 1
        _check(kb_dir, tally)
    tally["upload_kills"] = killed
    return round_


def _upload(httpx: Any, url: str, files: list, statuses: list[int | str]) -> None:
    try:
        response = httpx.post(f"{url}/v1/documents", files=files, timeout=300)
        statuses.append(response.status_code)
        if response.status_code >= 500:
            print(f"upload answered {response.status_code}: {response.text[:300]}")
    except httpx.HTTPError:
        statuses.append("killed")  # the server was killed mid-request


@pytest.mark.slow
def test_random_sigkills_never_corrupt_and_resume_without_duplicates(tmp_path):
    from kb_assistant import KnowledgeBase
    from kb_assistant.config import KBConfig

    t0 = time.perf_counter()
    rng = random.Random(16)
    docs = tmp_path / "docs"
    _make_corpus(docs)
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    # small embedding batches and constant index checkpoints: kills land mid-commit and mid-save
    cfg = KBConfig().merged({"ingest": {"embed_batch_chunks": 3, "checkpoint_seconds": 0.0}})
    cfg.save(kb_dir / "config.toml")

    n_upload = round(KILLS * UPLOAD_SHARE)
    tally = dict.fromkeys(("checked", "repaired", "inconsistent", "duplicates"), 0)
    server = _fork_server()
    try:
        ingest_runs = _ingest_kills(server, docs, kb_dir, KILLS - n_upload, rng, tally)
        upload_rounds = _upload_kills(server, kb_dir, n_upload, rng, tally)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=60)
    print(f"SIGKILL campaign: {tally['ingest_kills']} of {ingest_runs} ingest runs and "
          f"{tally['upload_kills']} of {upload_rounds} uploads killed mid-work; {tally}")

    from kb_assistant.server.uploads import recover_uploads

    kb = KnowledgeBase(kb_dir, create=False)
    recovered = recover_uploads(kb)  # what the next `kb serve` start does first
    report = kb.ingest(docs)  # the resume
    paths = [d["path"] for d in kb.documents()]
    stats = kb.verify()
    hit = kb.search("widget 17-3 weight", k=1)[0]
    uploaded = [p for p in paths if "uploads" in Path(p).parts]
    unacknowledged = _uploads_not_in_docstore(kb)
    kb.close()
    clean = KnowledgeBase(tmp_path / "clean")  # the same files ingested once, without kills
    clean.ingest([docs, *uploaded])
    clean_chunks = clean.verify()["chunks"]
    clean.close()
    resume = {"failed": len(report.failed), "documents": len(paths),
              "duplicate_paths": len(paths) - len(set(paths)),
              "ingested_files": sum(1 for p in paths if os.path.basename(p).startswith("doc_")),
              "uploaded_files": len(uploaded), "chunks": stats["chunks"], "clean_chunks": clean_chunks,
              "duplicate_positions": stats["duplicate_positions"], "verify_ok": stats["ok"],
              # files a kill left placed in uploads/ before their commit (the client got no 201), after
              # the recovery of the last kill's journal (the earlier ones: at each server start)
              "upload_journals_recovered_at_the_end": recovered,
              "upload_files_newer_than_their_document": unacknowledged}
    _record(tally, ingest_runs, upload_rounds, resume, time.perf_counter() - t0)

    assert tally["ingest_kills"] == KILLS - n_upload and tally["upload_kills"] == n_upload, tally
    assert tally["inconsistent"] == 0 and tally["duplicates"] == 0, tally
    assert tally["checked"] == ingest_runs + upload_rounds
    assert not report.failed
    assert resume["duplicate_paths"] == 0 and resume["ingested_files"] == N_FILES
    assert stats["ok"] and stats["chunks"] == stats["index_ids"]
    assert hit.source.endswith("doc_017.txt")
    assert stats["chunks"] == clean_chunks  # nothing missing, nothing doubled
    assert unacknowledged == 0, "an unacknowledged upload stayed in uploads/"


def _uploads_not_in_docstore(kb: Any) -> int:
    """Files under ``uploads/`` whose bytes are not what the docstore holds for their path (a server
    killed between placing an upload and committing it; its client never got a 201 and sends again)."""
    from kb_assistant.storage_utils import file_hash

    hashes = {d.path: d.content_hash for d in kb.docstore.documents()}
    files = [p for p in (kb.path / "uploads").rglob("*") if p.is_file() and ".staging" not in p.parts]
    return sum(1 for p in files if hashes.get(os.path.realpath(p)) != file_hash(p))


def _record(tally: dict[str, int], ingest_runs: int, upload_rounds: int, resume: dict[str, Any],
            seconds: float) -> None:
    """Write the campaign's figures to ``KB_CRASH_JSON`` when it is set."""
    out = os.environ.get("KB_CRASH_JSON")
    if not out:
        return
    data = {"kills": tally["ingest_kills"] + tally["upload_kills"],
            "ingest": {"runs": ingest_runs, "killed_mid_work": tally["ingest_kills"]},
            "upload": {"rounds": upload_rounds, "killed_mid_upload": tally["upload_kills"],
                       "responses": {k[7:]: v for k, v in tally.items()
                                     if k.startswith("upload_") and k != "upload_kills"}},
            "checks": tally["checked"], "inconsistent_after_reopen": tally["inconsistent"],
            "duplicates_after_kill": tally["duplicates"],
            "saved_indexes_behind_docstore_repaired_on_open": tally["repaired"],
            "resume": resume, "duplicates_after_resume": resume["duplicate_paths"]
            + resume["duplicate_positions"] + abs(resume["chunks"] - resume["clean_chunks"]),
            "wall_s": round(seconds, 1), "files": N_FILES,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg_end": [round(x, 2) for x in os.getloadavg()]}}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(data, indent=1) + "\n")
