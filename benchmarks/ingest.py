#!/usr/bin/env python
"""Ingest benchmark on a real corpus: kb-assistant vs the naive LlamaIndex pipeline vs raw encode.

    scripts/get_debian_handbook.sh                 # fetches the Debian Administrator's Handbook (HTML)
    python benchmarks/ingest.py [--corpus benchmarks/.corpus/en-US] [--repeats 2] [--json out.json]
    scripts/get_pdf_corpus.sh                      # the PDF manuals (en + zh, 412 pages)
    python benchmarks/ingest.py --corpus benchmarks/.corpus/pdf --pattern '*.pdf' --pipelines ours,raw \
        --json benchmarks/results/ingest_pdf.json

Each measurement runs in its own subprocess (so peak RSS is per pipeline), interleaved and repeated:
  ours        KnowledgeBase.ingest (parse/encode overlap, length-sorted batches, boilerplate re-use)
  ours-serial the same with parsing finished before embedding (what the overlap buys)
  llamaindex  the naive pipeline a user would write with the same model and chunk size: the same parsed
              text as LlamaIndex Documents + SentenceSplitter(chunk_size=256) + HuggingFaceEmbedding +
              FaissVectorStore
  raw         SentenceTransformer.encode of exactly our chunk texts (the floor), one call (length-sorted)
  raw-unsorted the same texts encoded batch by batch in document order (what length sorting buys)
Model load time is excluded everywhere (models are loaded before the clock starts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
CHUNK_TOKENS = 256


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PATTERN = "*.html"  # set by --pattern (the workers get it on their command line)


def _files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob(PATTERN) if p.is_file())


def _our_chunks(corpus: Path) -> tuple[list[str], object]:
    from kb_assistant.chunking import Chunker
    from kb_assistant.config import ChunkingConfig
    from kb_assistant.embedding import SentenceTransformerEmbedder
    from kb_assistant.loaders import load_file

    emb = SentenceTransformerEmbedder()
    chunker = Chunker(ChunkingConfig(chunk_tokens=CHUNK_TOKENS), emb.count_tokens, emb.max_tokens)
    texts: list[str] = []
    for i, path in enumerate(_files(corpus)):
        texts += [c.embed_text for c in chunker.chunk(load_file(path), f"d{i}")]
    return texts, emb


def worker_ours(corpus: Path, overlap: bool) -> dict:
    from kb_assistant import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(Path(tmp) / "kb", {"ingest": {"overlap": overlap}})
        _ = kb.embedder.model  # load before timing
        kb.chunker.count(["warm up"])
        start = time.perf_counter()
        report = kb.ingest(corpus, include=[PATTERN], show_progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = kb.ingest(corpus, include=[PATTERN], show_progress=False)
        reingest = time.perf_counter() - start
        rows = kb.docstore.conn.execute("SELECT n_tokens FROM chunks").fetchall()
        max_tokens = kb.embedder.max_tokens
        truncated = sum(1 for (n,) in rows if n > max_tokens)
        out = {"seconds": first, "files": len(report.added), "chunks": len(rows), "truncated": truncated,
               "failed": len(report.failed), "reingest_seconds": reingest,
               "reingest_unchanged": len(again.unchanged), **report.timings}
        kb.close()
    return out


def worker_llamaindex(corpus: Path) -> dict:
    import faiss
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    from kb_assistant.embedding import default_sentence_transformer_path
    from kb_assistant.loaders import load_file

    embed = HuggingFaceEmbedding(model_name=str(default_sentence_transformer_path()), device="cpu")
    embed.get_text_embedding("warm up")
    start = time.perf_counter()
    docs = []
    for path in _files(corpus):
        for d in load_file(path):
            docs.append(Document(text=d.text, metadata={"file_name": path.name}))
    nodes = SentenceSplitter(chunk_size=CHUNK_TOKENS).get_nodes_from_documents(docs)
    store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(384))
    VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                     embed_model=embed, show_progress=False)
    seconds = time.perf_counter() - start
    tok = embed._model.tokenizer
    limit = embed._model.max_seq_length
    lengths = [len(ids) for ids in tok([n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes],
                                       add_special_tokens=True, verbose=False)["input_ids"]]
    return {"seconds": seconds, "files": len(_files(corpus)), "chunks": len(nodes),
            "truncated": sum(1 for n in lengths if n > limit)}


def worker_raw(corpus: Path, sort: bool) -> dict:
    texts, emb = _our_chunks(corpus)
    model = emb.model
    model.encode(["warm up"])
    start = time.perf_counter()
    if sort:
        model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    else:
        for i in range(0, len(texts), 32):
            model.encode(texts[i:i + 32], batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "files": len(_files(corpus)), "chunks": len(texts), "truncated": 0}


WORKERS = {
    "ours": lambda c: worker_ours(c, True),
    "ours-serial": lambda c: worker_ours(c, False),
    "llamaindex": worker_llamaindex,
    "raw": lambda c: worker_raw(c, True),
    "raw-unsorted": lambda c: worker_raw(c, False),
}


def run_worker(name: str, corpus: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--corpus", str(corpus), "--pattern",
                          PATTERN], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT / "benchmarks" / ".corpus" / "en-US")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pipelines", default="ours,llamaindex,raw,ours-serial,raw-unsorted")
    ap.add_argument("--pattern", default="*.html", help="files of the corpus to ingest, e.g. '*.pdf'")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global PATTERN
    PATTERN = args.pattern
    if args.worker:
        result = WORKERS[args.worker](args.corpus)
        result["peak_rss_mb"] = _rss_mb()
        print(json.dumps(result))
        return 0
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus} (run scripts/get_debian_handbook.sh or get_pdf_corpus.sh)",
              file=sys.stderr)
        return 1
    names = args.pipelines.split(",")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(args.repeats):  # interleaved: A B C A B C
        for name in names:
            res = run_worker(name, args.corpus)
            runs[name].append(res)
            print(f"  run {rep + 1} {name:13s} {res['seconds']:7.1f} s  {res['chunks']} chunks", flush=True)
    table = {}
    for name, results in runs.items():
        secs = statistics.median(r["seconds"] for r in results)
        first = results[0]
        table[name] = {"seconds_median": secs, "seconds_all": [round(r["seconds"], 2) for r in results],
                       "files_per_s": first["files"] / secs, "chunks_per_s": first["chunks"] / secs,
                       "chunks": first["chunks"], "truncated": first["truncated"],
                       "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                       **{k: first[k] for k in ("reingest_seconds", "parse_s", "embed_s", "store_s",
                                                "chunks_embedded", "chunks_reused") if k in first}}
    print(f"\ncorpus: {args.corpus}  ({len(_files(args.corpus))} files), repeats={args.repeats}, "
          f"cpu threads={os.cpu_count()}")
    print(f"{'pipeline':13s} {'median s':>9s} {'files/s':>8s} {'chunks/s':>9s} {'chunks':>7s} "
          f"{'truncated':>9s} {'peak RSS MB':>11s}")
    for name, row in table.items():
        print(f"{name:13s} {row['seconds_median']:9.1f} {row['files_per_s']:8.2f} {row['chunks_per_s']:9.1f} "
              f"{row['chunks']:7d} {row['truncated']:9d} {row['peak_rss_mb']:11.0f}")
    if "ours" in table:
        ours = table["ours"]
        print("\nratios (time; lower is better for ours):")
        for other in ("raw", "llamaindex", "ours-serial"):
            if other in table:
                print(f"  ours / {other:12s} = {ours['seconds_median'] / table[other]['seconds_median']:.3f}")
        if "raw-unsorted" in table and "raw" in table:
            gain = table["raw-unsorted"]["seconds_median"] / table["raw"]["seconds_median"]
            print(f"  raw-unsorted / raw   = {gain:.3f}  (what length-sorted batches buy)")
        speedup = ours["seconds_median"] / ours["reingest_seconds"]
        print(f"  first ingest / unchanged re-ingest = {speedup:.0f}x ({ours['reingest_seconds']:.2f} s)")
        parse, embed, store = (ours.get(k, 0.0) for k in ("parse_s", "embed_s", "store_s"))
        print(f"  ours: parse {parse:.1f} s (overlapped), embed {embed:.1f} s, store {store:.1f} s; "
              f"{ours.get('chunks_reused', 0):.0f} repeated chunks re-used")
    if args.json:
        shown = args.corpus.relative_to(ROOT) if args.corpus.is_relative_to(ROOT) else args.corpus
        meta = {"corpus": str(shown), "pattern": PATTERN, "files": len(_files(args.corpus)),
                "repeats": args.repeats, "cpu_count": os.cpu_count(), "load_average_end": os.getloadavg()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, **table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
