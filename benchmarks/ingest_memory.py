#!/usr/bin/env python
"""Peak memory of the ingest pipeline against corpus size: is it bounded?

    python benchmarks/ingest_memory.py [--files 2000 8000 32000] [--big 16 32 64] [--old /work/main]
                                       [--json benchmarks/results/ingest_memory.json]

Two series of synthetic corpora, generated in a temporary folder, each ingest in its own subprocess
(``ru_maxrss`` is then the peak of that one ingest):
  files  N small text files (one chunk each): what grows with the number of files
  big    N files of 512 KB with an embedder slower than the parser (as MiniLM is on a CPU): what grows
         with the bytes parsed ahead of embedding (the old queue held up to 64 parsed files)
The embedder is a deterministic stand-in (vectors from a hash of the text, 384 dimensions, token count
= words + 2), so the run measures the pipeline's own memory in minutes; the real model adds a constant.
Each corpus is ingested with the derived indexes replaced by a stub that keeps nothing (the pipeline's
own memory: walk, queue, batches, docstore writes, report) and with the real FAISS + BM25 indexes.
``--old PATH`` also runs the pipeline alone with the kb_assistant found at PATH (e.g. the main branch
before this change). Reported per run: peak RSS, RSS before the ingest started (imports, open knowledge
base), the size of the index files at the end, and peak - before - index files (``pipeline_mb``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
BIG_BYTES = 512 * 1024
WORDS = ("policy", "leave", "server", "network", "printer", "invoice", "office", "badge", "laptop", "backup",
         "holiday", "travel", "expense", "contract", "meeting", "security", "password", "manual", "report")


def _sentence(i: int, j: int) -> str:
    words = [WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(12)]
    return f"Item {i}-{j}: " + " ".join(words) + f" number {i * 131 + j}."


def make_corpus(root: Path, kind: str, n: int) -> int:
    """Write the corpus; returns its size in bytes."""
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        if kind == "files":
            text = " ".join(_sentence(i, j) for j in range(4))
        else:
            parts, size, j = [], 0, 0
            while size < BIG_BYTES:
                s = _sentence(i, j)
                parts.append(s)
                size += len(s) + 1
                j += 1
            text = "\n".join(parts)
        sub = root / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:06d}.txt").write_text(text)
        total += len(text)
    return total


class StandInEmbedder:
    """Hash-seeded unit vectors; ``delay_s`` per text makes it slower than parsing, as a model on a CPU."""

    name = "bench:stand-in"
    backend = "bench"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    @property
    def dim(self) -> int:
        return DIM

    @property
    def max_tokens(self) -> int:
        return 256

    def count_tokens(self, texts):  # noqa: ANN001, ANN201 - the Embedder protocol
        return [len(t.split()) + 2 for t in texts]

    def embed_documents(self, texts, *, show_progress: bool = False):  # noqa: ANN001, ANN201
        import numpy as np

        out = np.empty((len(texts), DIM), dtype=np.float32)
        for k, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            out[k] = v / np.linalg.norm(v)
        if self.delay_s:
            time.sleep(self.delay_s * len(texts))
        return out

    def embed_query(self, text: str):  # noqa: ANN201
        return self.embed_documents([text])[0]


class NullIndexes:
    """Derived indexes that keep nothing: isolates the pipeline's own memory from the indexes'."""

    dim = DIM

    def open(self) -> None:
        pass

    def add(self, ids, vectors) -> None:  # noqa: ANN001
        pass

    def remove(self, ids) -> None:  # noqa: ANN001
        pass

    def save(self) -> None:
        pass


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(corpus: Path, kb_dir: Path, delay_s: float, queue_mb: float, null_index: bool) -> dict:
    from kb_assistant.chunking import Chunker
    from kb_assistant.config import ChunkingConfig, IngestConfig
    from kb_assistant.ingest import Ingestor
    from kb_assistant.store.docstore import DocStore
    from kb_assistant.store.indexes import Indexes

    emb = StandInEmbedder(delay_s)
    kb_dir.mkdir(parents=True)
    store = DocStore(kb_dir / "docstore.sqlite3")
    indexes = NullIndexes() if null_index else Indexes(kb_dir, store, DIM)
    indexes.open()
    chunker = Chunker(ChunkingConfig(), emb.count_tokens, emb.max_tokens)
    fields: dict = {"show_progress": False}
    if "queue_mb" in IngestConfig.__dataclass_fields__:
        fields["queue_mb"] = queue_mb
    ingestor = Ingestor(store, indexes, emb, chunker, IngestConfig(**fields), show_progress=False)
    before = _current_rss_mb()
    t0 = time.perf_counter()
    report = ingestor.run([corpus])
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    index_mb = sum(p.stat().st_size for p in kb_dir.rglob("*") if p.is_file() and "docstore" not in p.name)
    index_mb /= 2**20
    store.close()
    return {"files": len(report.added), "chunks": report.chunks_added, "failed": len(report.failed),
            "seconds": round(seconds, 2), "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
            "index_files_mb": round(index_mb, 1),
            "pipeline_mb": round(peak - before - index_mb, 1)}


def run_one(code: Path, corpus: Path, work: Path, delay_s: float, queue_mb: float,
            null_index: bool) -> dict:
    kb_dir = work / f"kb-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", str(corpus), str(kb_dir), str(delay_s), str(queue_mb),
           str(int(null_index))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    shutil.rmtree(kb_dir, ignore_errors=True)
    if out.returncode:
        raise SystemExit(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="*", default=[1000, 4000, 16000])
    ap.add_argument("--big", type=int, nargs="*", default=[16, 64])
    ap.add_argument("--big-delay-ms", type=float, default=2.0, help="stand-in model time per chunk")
    ap.add_argument("--queue-mb", type=float, default=16.0)
    ap.add_argument("--old", type=Path, help="also run the kb_assistant at this checkout")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/ingest_memory.json")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        corpus, kb_dir, delay, queue_mb, null = args.child
        print(json.dumps(child(Path(corpus), Path(kb_dir), float(delay), float(queue_mb), null == "1")))
        return
    # (label, code, null index): the pipeline alone, new and old, then new with the real indexes
    codes = [("new", ROOT, True)] + ([("old", args.old.resolve(), True)] if args.old else [])
    codes.append(("new", ROOT, False))
    rows = []
    with tempfile.TemporaryDirectory(prefix="kb-mem-") as tmp:
        work = Path(tmp)
        plan = [("files", n, 0.0) for n in args.files]
        plan += [("big", n, args.big_delay_ms / 1000) for n in args.big]
        for kind, n, delay in plan:
            corpus = work / f"{kind}-{n}"
            size = make_corpus(corpus, kind, n)
            for label, code, null in codes:
                row = {"series": kind, "n_files": n, "corpus_mb": round(size / 2**20, 1), "code": label,
                       "indexes": "none" if null else "faiss+bm25",
                       **run_one(code, corpus, work, delay, args.queue_mb, null)}
                print(json.dumps(row), flush=True)
                rows.append(row)
            shutil.rmtree(corpus)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()}
    result = {"benchmark": "ingest_memory", "machine": machine,
              "embedder": "stand-in (hash vectors, 384 dims; see the module docstring)",
              "queue_mb": args.queue_mb, "big_file_bytes": BIG_BYTES, "big_delay_ms": args.big_delay_ms,
              "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
