"""Scale: build time, resident memory, search latency and recall@10 at 100k-1M chunks, 2 CPU threads.

    python benchmarks/retrieval.py --embedders minilm --no-llamaindex     # the source KB, once
    python benchmarks/scale.py --chunks 100000 300000 1000000              # -> results/scale.json
    python benchmarks/scale.py --compare 10000 25000 50000 100000 300000   # index types -> scale_ann.json
    python benchmarks/scale.py --sharded 500000                            # 2 x 500k -> scale_shards.json
    python benchmarks/scale.py --plot                                      # -> docs/img/scale_latency.png

Synthesis (as ``benchmarks/search_latency.py``): every chunk of the handbook KB replicated with its
vector perturbed (N(0, sigma) per dimension, re-normalised: copies are near, not equal, so the
approximate index is not trivially exact) and a copy marker in its text and BM25 tokens; 12 chunks a
document, each in one of three access groups. Queries: the 189 dev questions (MiniLM). The exact top 10
of each is computed over the float32 vectors: unfiltered, for the "hr" third, and for one copy of the
handbook (``source="*/copy0/*"``, a very selective filter).

*Build*: the dense index from the docstore's vectors, as a knowledge base builds it on open
(``DenseIndex.reconcile``). *Measure*: a fresh process opens the ``KnowledgeBase`` and searches (dense
index with the query vector given; ``KnowledgeBase.search`` with the vector given and end to end). Build,
measure and ``--compare`` run in child processes holding ``/tmp/kb-bench.lock``; load average, wall and
CPU time are recorded with each figure.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.scale")
LOCK = "/tmp/kb-bench.lock"
GROUPS = ("hr", "eng", "ops")
SELECTIVE = {"source": "*/copy0/*"}
K = 10


def _proc_status() -> dict[str, float]:
    """Resident memory of this process in MB (VmRSS = anonymous + file-backed, VmHWM = peak)."""
    fields = (line.partition(":") for line in Path("/proc/self/status").read_text().splitlines())
    return {k: round(int(v.split()[0]) / 1024, 1) for k, _, v in fields
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


def _timed(fn: Any, inputs: Any) -> tuple[dict[str, float], list[Any]]:
    """(p50 and p95 in ms of ``fn`` over ``inputs``, its outputs)."""
    ms, cpu, outputs = [], [], []
    for item in inputs:
        t, c = time.perf_counter(), time.process_time()
        outputs.append(fn(item))
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    (p50, p95), (c50, c95) = np.percentile(ms, [50, 95]), np.percentile(cpu, [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "cpu_p50": round(float(c50), 3),
            "cpu_p95": round(float(c95), 3)}, outputs


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    hits = [len(set(g[g >= 0].tolist()) & set(w[w >= 0].tolist())) / max(1, int((w >= 0).sum()))
            for g, w in zip(got, want, strict=True)]
    return round(float(np.mean(hits)), 4)


class _TopK:
    """Running exact top-k ids of each query over batches of (ids, vectors)."""

    def __init__(self, q: np.ndarray) -> None:
        self.q = q
        self.scores = np.full((len(q), K), -np.inf, np.float32)
        self.ids = np.full((len(q), K), -1, np.int64)

    def update(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if not len(ids):
            return
        s = np.concatenate([self.scores, self.q @ vecs.T], axis=1)
        i = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.q), len(ids)))], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :K]
        self.scores, self.ids = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)


def _base(src: Path, qa: Path) -> dict[str, Any]:
    """The source KB's chunks (rows, vectors, BM25 tokens) and the embedded dev questions."""
    from kb_assistant import KnowledgeBase
    from kb_assistant.analysis import analyze
    from kb_assistant.evaluation import load_qa
    from kb_assistant.store.indexes import sparse_text

    kb = KnowledgeBase(src)
    ids = kb.docstore.chunk_ids()
    rows = kb.docstore.get_chunks(ids)
    out = {"ids": ids, "rows": rows, "vecs": kb.docstore.vectors(ids, kb.dim),
           "tokens": [analyze(sparse_text(rows[int(i)])) for i in ids],
           "q": np.stack([kb.embedder.embed_query(it.question) for it in load_qa(qa)])}
    kb.close()
    return out


def synthesise(src: Path, dst: Path, qa: Path, n_chunks: int, sigma: float, seed: int = 0) -> None:
    from kb_assistant.store.docstore import DocStore, DocumentRecord
    from kb_assistant.store.indexes import SPARSE_FILE
    from kb_assistant.store.sparse import SparseIndex
    from kb_assistant.types import Chunk

    t0 = time.perf_counter()
    base = _base(src, qa)
    ids, rows, base_vecs, q = base["ids"], base["rows"], base["vecs"], base["q"]
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("manifest.json", "config.toml"):
        shutil.copy(src / name, dst / name)
    rng = np.random.default_rng(seed)
    store = DocStore(dst / "docstore.sqlite3")
    store.conn.execute("PRAGMA synchronous=OFF")  # synthesis only: nothing to protect yet
    sparse = SparseIndex(dst / SPARSE_FILE)
    truth = {"all": _TopK(q), "hr": _TopK(q), "selective": _TopK(q)}
    per_doc, made, copy, n_doc = 12, 0, 0, 0
    while made < n_chunks:
        for start in range(0, len(ids), per_doc):
            part = ids[start:start + per_doc][: n_chunks - made]
            if not len(part):
                break
            doc_id, group = f"syn{copy:03d}-{start:06d}", GROUPS[n_doc % 3]
            rec = DocumentRecord(doc_id, f"/syn/copy{copy}/{rows[int(part[0])].path.rsplit('/', 2)[-2]}/"
                                 f"{start}.html", doc_id, time.time(), 1, "html", groups=[group])
            chunks = [Chunk(f"{doc_id}-{j}", doc_id, j, f"{rows[int(i)].text} (copy {copy})",
                            rows[int(i)].metadata, 1) for j, i in enumerate(part)]
            at = np.searchsorted(ids, part)
            vecs = base_vecs[at] + rng.normal(0, sigma, (len(part), base_vecs.shape[1])).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            _, added = store.replace_document(rec, chunks, vecs, [c.chunk_id for c in chunks])
            sparse.add_tokens(added, [base["tokens"][t] + [f"copy{copy}"] for t in at])
            for name, member in (("all", True), ("hr", group == "hr"), ("selective", copy == 0)):
                if member:
                    truth[name].update(np.asarray(added, np.int64), vecs)
            made, n_doc = made + len(part), n_doc + 1
            if made % 250_000 < len(part):  # checkpoints, as an ingest does: the delta stays bounded
                sparse.save()
        copy += 1
    sparse.save()
    store.close()
    np.savez(dst / "truth.npz", q=q, **{f"gt_{k}": t.ids for k, t in truth.items()})
    (dst / f".built-{n_chunks}").write_text("ok")
    logger.info("synthesised %d chunks in %.0f s", n_chunks, time.perf_counter() - t0)


def stage_build(dst: Path) -> dict[str, Any]:
    """The dense index built from the docstore's vectors, as ``KnowledgeBase`` does on open."""
    from kb_assistant.store.docstore import DocStore
    from kb_assistant.store.indexes import DENSE_FILE, SPARSE_FILE
    from kb_assistant.store.sparse import SparseIndex
    from kb_assistant.store.vector import DenseIndex

    store = DocStore(dst / "docstore.sqlite3")
    dim = int(json.loads((dst / "manifest.json").read_text())["embedding"]["dim"])
    (dst / DENSE_FILE).unlink(missing_ok=True)
    t = [time.perf_counter()]
    store_ids = store.chunk_ids()
    index = DenseIndex(dst / DENSE_FILE, dim, use_gpu=False)
    index.reconcile(store_ids, lambda part: store.vectors(part, dim))
    t.append(time.perf_counter())
    index.save()
    t.append(time.perf_counter())
    # the single writer's checkpoint at this size: one more 12-chunk document, then both indexes saved
    new = np.arange(12, dtype=np.int64) + int(store_ids.max()) + 1
    index.add(new, index.vectors(store_ids[:12]))
    sparse = SparseIndex(dst / SPARSE_FILE)
    sparse.add_tokens(new, [["checkpoint", "probe"]] * 12)
    for step in (index.save, sparse.save):
        t.append(time.perf_counter())
        step()
    t.append(time.perf_counter())
    index.remove(new)  # and back to the docstore's content
    sparse.remove(new)
    index.save()
    sparse.save()
    return {"build_s": round(t[1] - t[0], 1), "save_s": round(t[2] - t[1], 1),
            "checkpoint_dense_save_s": round(t[4] - t[3], 2),
            "checkpoint_sparse_save_s": round(t[5] - t[4], 2),
            "index": index.describe(), "file_mb": round((dst / DENSE_FILE).stat().st_size / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def stage_measure(dst: Path, k: int) -> dict[str, Any]:
    """Open the knowledge base in this fresh process and time its searches."""
    from kb_assistant import KnowledgeBase
    from kb_assistant.evaluation import load_qa

    res: dict[str, Any] = {"rss_start": _proc_status()}
    truth = np.load(dst / "truth.npz")
    questions = [it.question for it in load_qa(ROOT / "benchmarks/data/debian_qa.jsonl")]
    t0 = time.perf_counter()
    kb = KnowledgeBase(dst)
    for kw in ({}, {"groups": ["hr"]}, {"filters": SELECTIVE}):  # a Chinese query loads jieba's dictionary
        kb.search("warm-up 如何配置网络", k=1, **kw)
    res["open_s"] = round(time.perf_counter() - t0, 1)
    res["rss_open"] = _proc_status()
    res["index"] = kb.dense.describe()
    allowed = {"all": None, "hr": kb.retriever.allowed_ids(["hr"], None),
               "selective": kb.retriever.allowed_ids(None, SELECTIVE)}
    res["allowed"] = {f: (len(a) if a is not None else kb.dense.ntotal) for f, a in allowed.items()}
    for name, allow in allowed.items():
        lat, got = _timed(lambda v, a=allow: kb.dense.search(v, K, allowed=a)[1][0], truth["q"])
        res[f"dense_{name}"] = {**lat, "recall@10": _recall(np.array(got), truth[f"gt_{name}"])}

    def timed(fn: Any) -> dict[str, float]:
        return _timed(fn, questions)[0]

    emb = kb.embedder
    res["embed_only"] = timed(emb.embed_query)
    res["hybrid_e2e"] = timed(lambda s: kb.search(s, k=k))
    res["hybrid_e2e_acl"] = timed(lambda s: kb.search(s, k=k, groups=["hr"]))
    emb.embed_query = {s: emb.embed_query(s) for s in questions}.__getitem__  # type: ignore[method-assign]
    res["retrieval_vector_given"] = timed(lambda s: kb.search(s, k=k))
    res["retrieval_vector_given_acl"] = timed(lambda s: kb.search(s, k=k, groups=["hr"]))
    res["rss_end"] = _proc_status()
    kb.close()
    return res


def stage_shards(dsts: list[Path], k: int) -> dict[str, Any]:
    """``ShardedKnowledgeBase`` over ``dsts`` (a knowledge base and copies of it): merged top-k latency."""
    from kb_assistant.evaluation import load_qa
    from kb_assistant.shards import ShardedKnowledgeBase

    questions = [it.question for it in load_qa(ROOT / "benchmarks/data/debian_qa.jsonl")]
    t0 = time.perf_counter()
    skb = ShardedKnowledgeBase(dsts)
    for kw in ({}, {"groups": ["hr"]}):
        skb.search("warm-up 如何配置网络", k=1, **kw)
    res: dict[str, Any] = {"shards": len(dsts), "chunks": sum(kb.dense.ntotal for kb in skb.shards),
                           "open_s": round(time.perf_counter() - t0, 1), "rss_open": _proc_status()}

    def timed(fn: Any) -> dict[str, float]:
        return _timed(fn, questions)[0]

    res["hybrid_e2e"] = timed(lambda s: skb.search(s, k=k))
    res["hybrid_e2e_acl"] = timed(lambda s: skb.search(s, k=k, groups=["hr"]))
    emb = skb.shards[0].embedder  # the process-wide embedder the shards share
    emb.embed_query = {s: emb.embed_query(s) for s in questions}.__getitem__  # type: ignore[method-assign]
    res["retrieval_vector_given"] = timed(lambda s: skb.search(s, k=k))
    res["retrieval_vector_given_acl"] = timed(lambda s: skb.search(s, k=k, groups=["hr"]))
    # do the shards' searches overlap in threads? BM25 alone, shard after shard vs one thread a shard
    def bm25(kb: Any, q: str) -> Any:
        return kb.retriever.sparse.top(kb.retriever.sparse.score_all(q)[0], 50)

    res["bm25_sequential"] = timed(lambda q: [bm25(kb, q) for kb in skb.shards])
    res["bm25_threads"] = timed(lambda q: list(skb._pool.map(lambda kb: bm25(kb, q), skb.shards)))
    res["rss_end"] = _proc_status()
    skb.close()
    return res


def stage_compare(src: Path, qa: Path, n: int, sigma: float) -> list[dict[str, Any]]:
    """Candidate dense indexes on the same synthesised vectors (no docstore): build, memory, recall, p50."""
    import faiss

    from kb_assistant.store.vector import DenseIndex, DenseIndexConfig

    base = _base(src, qa)
    rng = np.random.default_rng(0)
    reps = -(-n // len(base["vecs"]))
    x = np.concatenate([base["vecs"] + rng.normal(0, sigma, base["vecs"].shape).astype(np.float32)
                        for _ in range(reps)])[:n]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q, ids = base["q"], np.arange(n, dtype=np.int64)
    gt = np.argsort(-(q @ x.T), axis=1)[:, :K]
    del base
    out = []

    def dense(label: str, **cfg: Any) -> None:
        t = time.perf_counter()
        idx = DenseIndex(Path("/nonexistent"), x.shape[1], use_gpu=False,
                         config=DenseIndexConfig(background=False, **cfg))
        idx.add(ids, x)
        build = time.perf_counter() - t
        lat, got = _timed(lambda v: idx.search(v, K)[1][0], q)
        out.append({"index": label, "n": n, "build_s": round(build, 1), **lat,
                    "recall@10": _recall(np.array(got), gt),
                    "index_mb": round(faiss.serialize_index(idx.index).nbytes / 2**20, 1)})
        logger.info("%s", out[-1])

    dense("exact (flat + float16 pre-scan)", ann_threshold=10**9)
    dense("IVF float16 (default)", ann_threshold=1)
    dense("IVF sq8", ann_threshold=1, storage="sq8")
    for m, efc in ((32, 40), (48, 100)):
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWSQ(x.shape[1], faiss.ScalarQuantizer.QT_fp16, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = efc
        hnsw.train(x[:50_000])
        hnsw.add(x)
        build = time.perf_counter() - t
        for ef in (64, 128, 256):
            hnsw.hnsw.efSearch = ef
            lat, got = _timed(lambda v, h=hnsw: h.search(v[None], K)[1][0], q)
            out.append({"index": f"HNSW{m} float16 efConstruction {efc} efSearch {ef}", "n": n,
                        "build_s": round(build, 1), **lat, "recall@10": _recall(np.array(got), gt),
                        "index_mb": round(faiss.serialize_index(hnsw).nbytes / 2**20, 1)})
            logger.info("%s", out[-1])
    return out


def _children(args: argparse.Namespace, stages: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Run stages, each in a fresh process, while holding the benchmark lock; their JSON results."""
    results = []
    with open(LOCK, "a") as lock:
        logger.info("waiting for %s ...", LOCK)
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stage, extra in stages:
            out = args.cache / f".scale-{stage}-{os.getpid()}.json"
            cmd = [sys.executable, __file__, "--stage", stage, "--stage-out", str(out), "--threads",
                   str(args.threads), "--sigma", str(args.sigma), *extra]
            load_before = os.getloadavg()
            # idle OpenMP threads sleep instead of spinning: on a shared 2-core machine a spinning team
            # made MiniLM's query embedding 450 ms instead of 7 ms (see docs/scaling.md)
            env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY",
                                                                                         "PASSIVE"))
            subprocess.run(cmd, check=True, env=env)
            results.append({"result": json.loads(out.read_text()), "load_avg_before": load_before,
                            "load_avg_after": os.getloadavg()})
            out.unlink()
    return results


def _merge(path: Path, key: str, value: Any, meta: dict[str, Any]) -> None:
    """Put one run (with the command that made it) into a results file, keeping the other runs."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({k: v for k, v in meta.items() if k != "command"})
    data.setdefault("runs", {})[key] = {"command": meta["command"], **value}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=ROOT / "benchmarks/.cache/kb-minilm")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks/.cache")
    ap.add_argument("--qa", type=Path, default=ROOT / "benchmarks/data/debian_qa.jsonl")
    ap.add_argument("--chunks", type=int, nargs="*", default=[])
    ap.add_argument("--compare", type=int, nargs="*", default=[])
    ap.add_argument("--sharded", type=int, nargs="*", default=[],
                    help="sizes whose KB is also searched as --n-shards shards (copies of it)")
    ap.add_argument("--n-shards", type=int, default=2)
    ap.add_argument("--plot", action="store_true", help="draw docs/img/scale_latency.png from the results")
    ap.add_argument("--sigma", type=float, default=0.02, help="per-dimension noise of a copy's vector")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true", help="synthesise again even if cached")
    ap.add_argument("--synthesise-only", action="store_true", help="prepare the KBs, time nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--stage", choices=("build", "measure", "compare", "shards"), help=argparse.SUPPRESS)
    for hidden, kind in (("--stage-out", Path), ("--dest", Path), ("--n", int)):
        ap.add_argument(hidden, type=kind, help=argparse.SUPPRESS)
    ap.add_argument("--dests", type=Path, nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    if args.stage:
        result = (stage_build(args.dest) if args.stage == "build" else stage_measure(args.dest, args.k)
                  if args.stage == "measure" else stage_shards(args.dests, args.k) if args.stage == "shards"
                  else stage_compare(args.source, args.qa, args.n, args.sigma))
        args.stage_out.write_text(json.dumps(result))
        return 0
    meta = {"threads": args.threads, "sigma": args.sigma, "cpu_count": os.cpu_count(),
            "faiss": faiss.__version__, "torch": torch.__version__}
    for n in args.chunks:
        dst = args.cache / f"kb-scale-{n}"
        if args.rebuild or not (dst / f".built-{n}").exists():
            synthesise(args.source, dst, args.qa, n, args.sigma)
        if args.synthesise_only:
            continue
        build, measure = _children(args, [("build", ["--dest", str(dst)]), ("measure", ["--dest", str(dst)])])
        _merge(args.out / "scale.json", str(n), {"build": build, "measure": measure},
               dict(meta, command="python benchmarks/scale.py --chunks " + " ".join(map(str, args.chunks))))
        logger.info("%d chunks: %s", n, json.dumps({"build": build["result"], "measure": measure["result"]}))
    for n in args.compare:
        rows = _children(args, [("compare", ["--n", str(n)])])[0]
        _merge(args.out / "scale_ann.json", str(n), rows,
               dict(meta, command="python benchmarks/scale.py --compare " + " ".join(map(str, args.compare))))
    for n in args.sharded:  # the measured KB of that size (dense index built) and copies of it
        dsts = [args.cache / f"kb-scale-{n}"] + [args.cache / f"kb-scale-{n}-copy{i}" for i in
                                                 range(1, args.n_shards)]
        for dst in dsts[1:]:
            if not (dst / f".built-{n}").exists():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(dsts[0], dst)
        rows = _children(args, [("shards", ["--dests", *map(str, dsts)])])[0]
        _merge(args.out / "scale_shards.json", f"{args.n_shards}x{n}", rows,
               dict(meta, command=f"python benchmarks/scale.py --sharded {n} --n-shards {args.n_shards}"))
    if args.plot:
        plot(args.out / "scale.json", args.out / "scale_ann.json", ROOT / "docs/img/scale_latency.png")
    return 0


def plot(scale_json: Path, ann_json: Path, png: Path) -> None:
    """p50 latency (wall clock and CPU time) and resident memory against the number of chunks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = json.loads(scale_json.read_text())["runs"]
    sizes = sorted(runs, key=int)
    m = {n: runs[n]["measure"]["result"] for n in sizes}
    x = [int(n) for n in sizes]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    shards_json = scale_json.with_name("scale_shards.json")
    sh = ([r["result"] for r in json.loads(shards_json.read_text())["runs"].values()]
          if shards_json.exists() else [])
    exact = sorted((int(n), r) for n, rows in json.loads(ann_json.read_text())["runs"].items()
                   for r in rows["result"] if r["index"].startswith("exact")) if ann_json.exists() else []
    for ax, stat, title in ((axes[0], "p50", "wall clock, p50"), (axes[1], "cpu_p50", "CPU time, p50")):
        for key, label in (("hybrid_e2e", "hybrid, end to end (query embedding included)"),
                           ("retrieval_vector_given", "hybrid, query vector given"),
                           ("dense_all", "dense IVF, vector given"),
                           ("dense_hr", "dense IVF + ACL (a third)"),
                           ("dense_selective", "dense IVF + filter (3,170 chunks)")):
            ax.plot(x, [m[n][key][stat] for n in sizes], "o-", label=label)
        if exact:
            ax.plot([e[0] for e in exact], [e[1][stat] for e in exact], "s--", label="dense exact scan")
        if sh:
            ax.plot([r["chunks"] for r in sh], [r["hybrid_e2e"][stat] for r in sh], "D", color="black",
                    label=f"hybrid, end to end, {sh[0]['shards']} shards merged")
        for target in (30, 5):
            ax.axhline(target, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="chunks", ylabel="ms per query, 2 CPU threads",
               title=f"search latency ({title})")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    for key, label in (("VmRSS", "RSS (anonymous + file-backed)"), ("RssAnon", "anonymous")):
        axes[2].plot(x, [m[n]["rss_end"][key] / 1024 for n in sizes], "o-", label=label)
    axes[2].axhline(3, color="grey", lw=0.8, ls=":")
    axes[2].set(xscale="log", xlabel="chunks", ylabel="GB", title="resident memory after the searches")
    axes[2].legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    logger.info("wrote %s", png)

if __name__ == "__main__":
    raise SystemExit(main())
