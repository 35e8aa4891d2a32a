"""Hybrid retrieval: dense (FAISS) + BM25 candidates, fused, optionally reranked, de-duplicated.

A :class:`Retriever` receives its parts: the docstore (chunk rows), the dense and the sparse index,
the embedder, its :class:`~kb_assistant.config.RetrievalConfig`, the score calibration and the access
catalog. Access control and filters are applied *before* the cut to k: the set of readable, matching
chunk row ids (:class:`~kb_assistant.store.catalog.Catalog`, cached per docstore version) is passed to
both indexes, so ``k`` readable hits come back whenever ``k`` exist. Every hit is re-checked against
its fresh docstore row before it is returned.

``Hit.score`` is a calibrated relevance in [0, 1] (:mod:`kb_assistant.calibration`). Hits are ordered
by the fused rank (or the reranker), not by this score. Raw evidence stays in ``hit.metadata``:
``dense_score`` (cosine), ``bm25_score`` (raw BM25), ``bm25_norm`` (BM25 / the query's maximum),
``fused`` (RRF or weighted score), ``rerank_score`` when a reranker ran, ``query_lang``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .calibration import Calibration
from .config import RetrievalConfig
from .store.catalog import Catalog, check_filters, matches_filters, readable
from .text import detect_lang
from .types import Hit

if TYPE_CHECKING:
    from .embedding import Embedder
    from .store.docstore import ChunkRow, DocStore
    from .store.sparse import SparseIndex
    from .store.vector import DenseIndex

logger = logging.getLogger(__name__)


def fuse(cand: np.ndarray, dense_ids: np.ndarray, sparse_ids: np.ndarray, dense_cos: np.ndarray,
         bm25: np.ndarray, cfg: Any, dense_weight: float | None = None) -> np.ndarray:
    """Fused score of each candidate: weighted RRF over the two rankings, or a weighted sum of the
    min-max normalised dense cosine and BM25 (``cfg.fusion``); ``dense_weight`` (default
    ``cfg.dense_weight``) weighs dense."""
    dw = cfg.dense_weight if dense_weight is None else dense_weight
    wd, ws = 2 * dw, 2 * (1 - dw)
    if cfg.mode != "hybrid":
        wd, ws = float(cfg.mode == "dense"), float(cfg.mode == "sparse")
    if cfg.fusion == "rrf":
        out = np.zeros(len(cand), np.float64)
        for ranked, w in ((dense_ids, wd), (sparse_ids, ws)):
            rank = {int(i): r for r, i in enumerate(ranked, start=1)}
            out += np.array([w / (cfg.rrf_k + rank[int(i)]) if int(i) in rank else 0.0 for i in cand])
        return out

    def minmax(x: np.ndarray) -> np.ndarray:
        span = float(x.max() - x.min()) if len(x) else 0.0
        return (x - x.min()) / span if span > 0 else np.zeros_like(x, dtype=np.float64)

    return wd / 2 * minmax(dense_cos.astype(np.float64)) + ws / 2 * minmax(bm25.astype(np.float64))


def mmr_order(vecs: np.ndarray | None, n: int, k: int, lam: float, dedup: float) -> list[int]:
    """Indexes of the k hits to return from candidates in rank order. A near-duplicate (cosine > dedup)
    of an earlier pick goes to the end (used only to fill up k); ``lam`` > 0 re-orders by MMR."""
    if vecs is None or n == 0:
        return list(range(min(n, k)))
    picks: list[int] = []
    dups: list[int] = []
    left = list(range(n))
    sims = vecs @ vecs.T if lam > 0 else None
    rel = 1.0 - np.arange(n) / n
    while left and len(picks) < k:
        if sims is not None and picks:
            red = sims[np.ix_(left, picks)].max(axis=1)
            j = left.pop(int(np.argmax(lam * rel[left] - (1 - lam) * red)))
        else:
            j = left.pop(0)
        if dedup < 1 and picks and float((vecs[picks] @ vecs[j]).max()) > dedup:
            dups.append(j)
            continue
        picks.append(j)
    return picks + dups[:k - len(picks)]


class Retriever:
    """Search over one knowledge base's parts (see the module docstring)."""

    def __init__(self, docstore: DocStore, dense: DenseIndex, sparse: SparseIndex, embedder: Embedder,
                 config: RetrievalConfig, calibration: Calibration, catalog: Catalog | None = None) -> None:
        self.docstore = docstore
        self.dense = dense
        self.sparse = sparse
        self.embedder = embedder
        self.config = config
        self.calibration = calibration
        self.catalog = catalog or Catalog(docstore)
        self._reranker: Any = None
        self._lock = threading.RLock()

    @property
    def reranker(self) -> Any:
        path = self.config.reranker_path
        if not path:
            return None
        with self._lock:
            if self._reranker is None or self._reranker.path != str(path):
                from .rerank import get_reranker

                self._reranker = get_reranker(path)
        return self._reranker

    def allowed_ids(self, groups: Sequence[str] | None, filters: dict[str, Any] | None) -> np.ndarray | None:
        """Row ids the caller may see and that match the filters; None = no restriction."""
        return self.catalog.allowed_ids(groups, filters)

    def _dense_search(self, qvec: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[
            np.ndarray, np.ndarray]:
        dense = self.dense
        if dense.ntotal == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, ids = dense.search(qvec[None, :], n, allowed=allowed)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.dense.index.reconstruct_batch(np.asarray(ids, np.int64)), np.float32)
        except RuntimeError:
            return self.docstore.vectors(ids, self.dense.dim)

    # -- search ------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, *, groups: Sequence[str] | None = None,
               filters: dict[str, Any] | None = None) -> list[Hit]:
        cfg = self.config
        if k <= 0 or not query.strip():
            check_filters(filters)
            return []
        allowed = self.allowed_ids(groups, filters)
        if allowed is not None and len(allowed) == 0:
            return []
        qlang = detect_lang(query)
        n_cand = max(cfg.candidates, k * 2, cfg.rerank_top if cfg.reranker_path else 0)
        use_dense, use_sparse = cfg.mode in ("hybrid", "dense"), cfg.mode in ("hybrid", "sparse")

        qvec = self.embedder.embed_query(query) if use_dense or cfg.dedup_threshold < 1 else None
        dense_ids, _ = (self._dense_search(qvec, n_cand, allowed) if use_dense and qvec is not None
                        else (np.zeros(0, np.int64), None))
        sparse = self.sparse
        bm25_all, bm25_max = sparse.score_all(query)
        sparse_ids, _ = sparse.top(bm25_all, n_cand, allowed) if use_sparse else (np.zeros(0, np.int64), None)

        cand = np.array(list(dict.fromkeys([*dense_ids.tolist(), *sparse_ids.tolist()])), dtype=np.int64)
        if len(cand) == 0:
            return []
        vecs = self._vectors(cand) if qvec is not None else None
        dense_cos = vecs @ qvec if vecs is not None else np.zeros(len(cand), np.float32)
        pos = sparse.positions(cand)
        bm25 = np.where(pos >= 0, bm25_all[np.maximum(pos, 0)], 0.0).astype(np.float32)
        dw = cfg.dense_weight_cjk if qlang == "zh" and cfg.dense_weight_cjk is not None else cfg.dense_weight
        fused = fuse(cand, dense_ids, sparse_ids, dense_cos, bm25, cfg, dw)
        order = np.argsort(-fused, kind="stable")
        cand, dense_cos, bm25, fused = cand[order], dense_cos[order], bm25[order], fused[order]
        vecs = vecs[order] if vecs is not None else None

        rows: dict[int, ChunkRow] = {}
        rerank_scores: np.ndarray | None = None
        if self.reranker is not None and len(cand):
            top = min(cfg.rerank_top, len(cand))
            rows.update(self.docstore.get_chunks(cand[:top]))
            texts = [rows[int(i)].text if int(i) in rows else "" for i in cand[:top]]
            rs = np.asarray(self.reranker.score(query, texts), np.float32)
            new = np.concatenate([np.argsort(-rs, kind="stable"), np.arange(top, len(cand))])
            rerank_scores = np.concatenate([rs, np.full(len(cand) - top, np.nan, np.float32)])[new]
            cand, dense_cos, bm25, fused = cand[new], dense_cos[new], bm25[new], fused[new]
            vecs = vecs[new] if vecs is not None else None

        picks = mmr_order(vecs, len(cand), k, cfg.mmr_lambda, cfg.dedup_threshold)
        rows.update(self.docstore.get_chunks([int(cand[j]) for j in picks if int(cand[j]) not in rows]))
        calib = self.calibration
        bm25_norm = bm25 / bm25_max
        hits = []
        for j in picks:
            row = rows.get(int(cand[j]))
            # defence in depth: the fresh row must still be readable and match (labels may just have changed)
            if row is None or not readable(row.groups, groups) or not matches_filters(
                    row, filters, self.catalog.document(row.doc_id) if filters else None):
                continue
            meta = dict(row.metadata, doc_id=row.doc_id, position=row.position, row_id=int(cand[j]),
                        dense_score=float(dense_cos[j]), bm25_score=float(bm25[j]),
                        bm25_norm=float(bm25_norm[j]), fused=float(fused[j]), query_lang=qlang)
            if rerank_scores is not None and not np.isnan(rerank_scores[j]):
                meta["rerank_score"] = float(rerank_scores[j])
            hits.append(Hit(text=row.text, score=calib.score(float(dense_cos[j]), float(bm25_norm[j])),
                            source=row.path, page=row.metadata.get("page"), chunk_id=row.chunk_id,
                            metadata=meta))
        if cfg.neighbours:
            self._expand(hits, cfg.neighbours)
        return hits

    def _expand(self, hits: list[Hit], radius: int) -> None:
        """Put the text of the chunks around each hit (same document) in ``metadata['context']``."""
        for hit in hits:
            around = self.docstore.neighbours(hit.metadata["doc_id"], hit.metadata["position"], radius)
            hit.metadata["context"] = "\n".join(r.text for r in around)
