#!/usr/bin/env python
"""The GPU figures of issue #14 in one short run on a lent device (device time is minutes, not hours).

Here, once (no GPU needed; writes the git-ignored folder ``.gpu/``: MiniLM in fp16, 45 MB, so that it
travels within the device tool's 64 MiB)::

    python benchmarks/gpu_figures.py --prepare

On the device (its image has torch, sentence-transformers and pytest; no faiss, no network), one call::

    run(command="PYTHONUNBUFFERED=1 python3 benchmarks/gpu_figures.py --out $OUT/gpu_figures.json",
        carry=[".gpu"], timeout_s=420)

then copy the JSON to ``benchmarks/results/gpu_figures.json`` and the table into docs/benchmarks.md.

What it measures, each in the same run against its baseline:

* **embedding throughput** (chunks/s, fp16) of the pipeline's embedding stage
  (``SentenceTransformerEmbedder.embed_documents``, what the ingest calls, at ``[embedding]
  gpu_batch_size``) against raw ``SentenceTransformer.encode`` on the same texts and batch size, at
  several batch sizes; texts are ~1,000-character windows of this repository's documentation (English
  prose, ~200-250 tokens, like real chunks). Target: >= 5,000 chunks/s, within 10 % of raw encode.
* **exact search at 1M vectors** on the GPU (384-d fp16, a torch matrix product + top-k: faiss-gpu is
  not in the device image; with faiss importable its GPU flat index is measured too): p50/p95 per
  single query and per batch of 64.
* **the ``gpu``-marked tests** that need no package beyond the image (``tests/test_gpu.py``: fp16
  embeddings against the CPU's, ``gpu_batch_size`` used on CUDA); their outcome is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREPARED = ROOT / ".gpu"
MODEL = PREPARED / "minilm-fp16"


def prepare() -> int:
    """Save the embedded MiniLM in fp16 under ``.gpu/`` (git-ignored)."""
    sys.path.insert(0, str(ROOT))
    from sentence_transformers import SentenceTransformer

    from kb_assistant.embedding import default_sentence_transformer_path

    model = SentenceTransformer(str(default_sentence_transformer_path()), device="cpu")
    model.half()
    MODEL.parent.mkdir(exist_ok=True)
    model.save(str(MODEL))
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    print(f"wrote {MODEL} ({size / 1e6:.1f} MB)")
    return 0


def texts(n: int) -> list[str]:
    """``n`` chunk-sized windows of the repository's Markdown (repeated as needed)."""
    words: list[str] = []
    for path in sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"]):
        words += path.read_text(encoding="utf-8", errors="replace").split()
    windows, cur, size = [], [], 0
    for w in words:
        cur.append(w)
        size += len(w) + 1
        if size >= 1000:
            windows.append(" ".join(cur))
            cur, size = [], 0
    return [f"{windows[i % len(windows)]} ({i})" for i in range(n)]  # distinct texts


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def embedding(n: int, batches: list[int]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from kb_assistant.embedding import SentenceTransformerEmbedder

    data = texts(n)
    raw = SentenceTransformer(str(MODEL), device="cuda", local_files_only=True).half()
    out: dict = {"chunks": n, "model": "all-MiniLM-L6-v2 fp16", "by_batch": {}}
    for b in batches:
        ours = SentenceTransformerEmbedder(MODEL, device="cuda", fp16=True, gpu_batch_size=b)
        raw.encode(data[: 2 * b], batch_size=b, normalize_embeddings=True)  # warm-up
        ours.embed_documents(data[: 2 * b])
        row = {}
        for name, fn in (("raw_encode", lambda b=b: raw.encode(data, batch_size=b, normalize_embeddings=True,
                                                               convert_to_numpy=True)),
                         ("pipeline", lambda ours=ours: ours.embed_documents(data))):
            _sync()
            t0 = time.perf_counter()
            vecs = fn()
            _sync()
            row[name] = round(n / (time.perf_counter() - t0), 1)
            assert len(vecs) == n
        row["pipeline_vs_raw"] = round(row["pipeline"] / row["raw_encode"], 3)
        out["by_batch"][b] = row
        print(f"batch {b}: {row}", flush=True)
        del ours
        torch.cuda.empty_cache()
    return out


def search(n: int, dim: int = 384, queries: int = 200) -> dict:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32)).cuda().half()
    base = torch.nn.functional.normalize(base, dim=1)
    q = torch.nn.functional.normalize(torch.from_numpy(
        rng.standard_normal((queries, dim), dtype=np.float32)).cuda().half(), dim=1)

    def timed(batch: int) -> list[float]:
        times = []
        for i in range(0, queries, batch):
            _sync()
            t0 = time.perf_counter()
            torch.topk(q[i:i + batch] @ base.T, 10, dim=1).indices.cpu()
            times.append((time.perf_counter() - t0) * 1000)
        return times

    timed(1)  # warm-up
    single, batched = timed(1), timed(64)
    out = {"vectors": n, "dim": dim, "engine": "torch fp16 matmul + topk (exact)",
           "single_query_ms": {"p50": round(statistics.median(single), 3),
                               "p95": round(sorted(single)[int(0.95 * len(single))], 3)},
           "batch64_ms_per_query": round(statistics.median(batched) / 64, 4)}
    try:
        import faiss  # noqa: F401 - only when carried

        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(res, dim)
        index.add(base.float().cpu().numpy())
        qs = q.float().cpu().numpy()
        lat = []
        for i in range(queries):
            t0 = time.perf_counter()
            index.search(qs[i:i + 1], 10)
            lat.append((time.perf_counter() - t0) * 1000)
        out["faiss_gpu_flat_single_ms_p50"] = round(statistics.median(lat), 3)
    except ImportError:
        out["faiss_gpu"] = "not installed in the device image"
    print(f"search: {out}", flush=True)
    return out


def gpu_tests() -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "tests/test_gpu.py::test_fp16_embeddings_on_cuda_match_cpu",
           "tests/test_gpu.py::test_gpu_batch_size_is_used_on_cuda"]
    env = dict(os.environ, KB_EMBEDDER_PATH=str(MODEL), PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    print("gpu tests:", " | ".join(tail), flush=True)
    return {"command": " ".join(cmd[2:]), "returncode": proc.returncode, "tail": tail}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare", action="store_true", help="here: write .gpu/ (the fp16 model) and stop")
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_figures.json")
    args = ap.parse_args()
    if args.prepare:
        return prepare()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: run this on the lent GPU machine (see the module docstring)")
        return 2
    if not MODEL.is_dir():
        print(f"{MODEL} missing: run `python benchmarks/gpu_figures.py --prepare` here and carry .gpu")
        return 2
    record: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                  time.gmtime())}
    t0 = time.perf_counter()
    for name, fn in (("embedding", lambda: embedding(args.chunks, args.batches)),
                     ("search_1m", lambda: search(args.vectors)), ("tests", gpu_tests)):
        try:
            record[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one failing part must not lose the others' figures
            record[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name} failed: {exc}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2), encoding="utf-8")  # after each part
    record["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"wrote {args.out} ({record['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
