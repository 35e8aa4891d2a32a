"""Search latency (query embedding included) at 100k chunks on 2 CPU threads.

    python benchmarks/retrieval.py --embedders minilm --no-llamaindex   # builds the source KB once
    python benchmarks/search_latency.py [--chunks 100000] [--threads 2]

The 100k-chunk knowledge base is synthesised from the real handbook KB (``benchmarks/.cache/kb-minilm``)
without embedding anything: every real chunk is replicated with a perturbed vector (noise, then
re-normalised) and its text with a copy marker, into a fresh docstore, FAISS index and BM25 index
(the BM25 rows are the analysed tokens of the original chunk plus a copy token). Documents get access
groups (a third of them "hr"), so the ACL path is measured too. Queries are the dev QA questions.
Wall time and process CPU time are both reported: on a shared machine the CPU time per query is the
better estimate of the latency on free cores (with --threads 1 the two agree on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from kb_assistant import KnowledgeBase  # noqa: E402
from kb_assistant.analysis import analyze  # noqa: E402
from kb_assistant.evaluation import load_qa, percentile  # noqa: E402
from kb_assistant.store.docstore import DocStore, DocumentRecord  # noqa: E402
from kb_assistant.types import Chunk  # noqa: E402


def synthesise(src: Path, dst: Path, n_chunks: int, seed: int = 0) -> None:
    from kb_assistant.store.indexes import SPARSE_FILE
    from kb_assistant.store.indexes import sparse_text as _sparse_text
    from kb_assistant.store.sparse import SparseIndex
    from kb_assistant.store.vector import DenseIndex

    rng = np.random.default_rng(seed)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("manifest.json", "config.toml"):
        shutil.copy(src / name, dst / name)
    source = DocStore(src / "docstore.sqlite3")
    ids = source.chunk_ids()
    rows = source.get_chunks(ids)
    blob = source.conn.execute("SELECT vector FROM chunks LIMIT 1").fetchone()[0]
    dim = len(np.frombuffer(blob, np.float32))
    base_vecs = source.vectors(ids, dim)
    base_tokens = [analyze(_sparse_text(rows[int(i)])) for i in ids]
    store = DocStore(dst / "docstore.sqlite3")
    dense = DenseIndex(dst / "dense.faiss", dim, use_gpu=False)
    sparse = SparseIndex(dst / SPARSE_FILE)
    per_doc, made, copy = 12, 0, 0
    while made < n_chunks:
        for start in range(0, len(ids), per_doc):
            part = ids[start:start + per_doc][: n_chunks - made]
            if not len(part):
                break
            doc_id = f"syn{copy:03d}-{start:06d}"
            rec = DocumentRecord(doc_id, f"/syn/copy{copy}/{rows[int(part[0])].path.rsplit('/', 2)[-2]}/"
                                 f"{start}.html", doc_id, time.time(), 1, "html",
                                 groups=["hr"] if (start // per_doc) % 3 == 0 else [])
            chunks = [Chunk(f"{doc_id}-{j}", doc_id, j, f"{rows[int(i)].text} (copy {copy})",
                            rows[int(i)].metadata, 1) for j, i in enumerate(part)]
            idx = np.searchsorted(ids, part)
            vecs = base_vecs[idx] + rng.normal(0, 0.02, (len(part), dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            _, added = store.replace_document(rec, chunks, vecs, [c.chunk_id for c in chunks])
            dense.add(np.asarray(added, np.int64), vecs)
            sparse.add_tokens(added, [base_tokens[t] + [f"copy{copy}"] for t in idx])
            made += len(part)
        copy += 1
    dense.save()
    sparse.save()
    store.close()
    source.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=ROOT / "benchmarks/.cache/kb-minilm")
    ap.add_argument("--dest", type=Path, default=ROOT / "benchmarks/.cache/kb-latency")
    ap.add_argument("--qa", type=Path, default=ROOT / "benchmarks/data/debian_qa.jsonl")
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    marker = args.dest / f".built-{args.chunks}"
    if args.rebuild or not marker.exists():
        synthesise(args.source, args.dest, args.chunks)
        marker.write_text("ok")
        print(f"synthesised {args.chunks} chunks in {time.perf_counter() - t0:.0f} s", flush=True)
    kb = KnowledgeBase(args.dest)
    t0 = time.perf_counter()
    kb.search("warm-up", k=1)
    kb.search("warm-up", k=1, groups=["eng"])
    print(f"opened (indexes loaded/reconciled) in {time.perf_counter() - t0:.1f} s; "
          f"{kb.dense.ntotal} vectors, {len(kb.retriever.sparse)} BM25 rows", flush=True)
    questions = [it.question for it in load_qa(args.qa)]
    results = {}

    def measure(label: str, fn: object) -> None:
        wall, cpu = [], []
        for q in questions:
            t, c = time.perf_counter(), time.process_time()
            fn(q)  # type: ignore[operator]
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        results[label] = {"p50": percentile(wall, 50), "p95": percentile(wall, 95),
                          "cpu_p50": percentile(cpu, 50), "cpu_p95": percentile(cpu, 95), "n": len(wall)}

    emb = kb.embedder
    measure("query embedding only", emb.embed_query)
    measure("hybrid (embedding included)", lambda q: kb.search(q, k=args.k))
    measure("hybrid + ACL groups=['eng']", lambda q: kb.search(q, k=args.k, groups=["eng"]))
    measure("hybrid + filter lang=zh", lambda q: kb.search(q, k=args.k, filters={"lang": "zh"}))
    cache = {q: emb.embed_query(q) for q in questions}
    original = emb.embed_query
    emb.embed_query = cache.__getitem__  # type: ignore[method-assign]
    try:
        measure("retrieval only (cached query vector)", lambda q: kb.search(q, k=args.k))
        measure("retrieval only + ACL", lambda q: kb.search(q, k=args.k, groups=["eng"]))
    finally:
        emb.embed_query = original  # type: ignore[method-assign]
    print(f"| {kb.dense.ntotal} chunks, {args.threads} threads, k={args.k} | p50 ms | p95 ms | "
          "CPU p50 ms | CPU p95 ms |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['p50']:.1f} | {r['p95']:.1f} | {r['cpu_p50']:.1f} | {r['cpu_p95']:.1f} |")
    print(json.dumps({"load_avg": os.getloadavg(), "results": results}))
    kb.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
