"""Hybrid retrieval: dense (FAISS) + BM25 candidates, fused, optionally reranked, de-duplicated.

A :class:`Retriever` receives its parts: the docstore (chunk rows), the dense and the sparse index,
the embedder, its :class:`~kb_assistant.config.RetrievalConfig`, the score calibration and the access
catalog. Access control and filters are applied *before* the cut to k: the set of readable, matching
chunk row ids (:class:`~kb_assistant.store.catalog.Catalog`, cached per docstore version) is passed to
both indexes, so ``k`` readable hits come back whenever ``k`` exist. Every hit is re-checked against
its fresh docstore row before it is returned.

Channels: the dense vector of a chunk may hold several parts (``embedder.parts``: the primary
``dense`` channel and a multilingual ``xling`` one, see :class:`~kb_assistant.embedding.DualEmbedder`);
each part is searched for its own candidates and scored on its own, and BM25 is the last channel.
Fusion weighs them per candidate: ``xling_weight`` for passages in the question's language,
``xling_weight_other`` for passages in another language (where the English-only channel and shared
words carry little), the rest split between dense and BM25 by ``dense_weight``. Language preference:
passages in the question's language (:func:`kb_assistant.text.detect_lang`) get ``lang_bonus`` added
to their fused score, so of near-equal hits (the English and the Chinese version of one page) the one
the asker can read comes first.

``Hit.score`` is a calibrated relevance in [0, 1] (:mod:`kb_assistant.calibration`). Hits are ordered
by the fused rank (or the reranker), not by this score. Raw evidence stays in ``hit.metadata``:
``dense_score`` (cosine of the primary channel), ``xling_score`` (cosine of the cross-lingual channel,
when there is one), ``bm25_score`` (raw BM25), ``bm25_norm`` (BM25 / the query's maximum), ``fused``
(RRF or weighted score), ``rerank_score`` when a reranker ran, ``query_lang``, ``lang`` (the chunk's)
and ``lang_match`` (``lang == query_lang``: a hit in another language is quoted as such).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
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


def channel_terms(cand: np.ndarray, ranked: np.ndarray, scores: np.ndarray, cfg: Any) -> np.ndarray:
    """One channel's contribution per candidate before weighting: ``2 / (rrf_k + rank)`` in its ranking
    (0 when absent) for RRF, the min-max normalised score for weighted fusion."""
    if cfg.fusion == "rrf":
        rank = {int(i): r for r, i in enumerate(ranked, start=1)}
        return np.array([2.0 / (cfg.rrf_k + rank[int(i)]) if int(i) in rank else 0.0 for i in cand])
    x = scores.astype(np.float64)
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def fuse(cand: np.ndarray, dense_ids: np.ndarray, sparse_ids: np.ndarray, dense_cos: np.ndarray,
         bm25: np.ndarray, cfg: Any, dense_weight: float | None = None) -> np.ndarray:
    """Fused score of each candidate: weighted RRF over the two rankings, or a weighted sum of the
    min-max normalised dense cosine and BM25 (``cfg.fusion``); ``dense_weight`` (default
    ``cfg.dense_weight``) weighs dense."""
    wd, ws = _mode_weights(cfg, cfg.dense_weight if dense_weight is None else dense_weight)
    return (wd * channel_terms(cand, dense_ids, dense_cos, cfg)
            + ws * channel_terms(cand, sparse_ids, bm25, cfg))


def _mode_weights(cfg: Any, dense_weight: float) -> tuple[float, float]:
    """(dense, sparse) weights of the fusion for ``cfg.mode`` (a single mode keeps half, as it always
    did, so ``fused`` values do not change)."""
    if cfg.mode != "hybrid":
        return 0.5 * (cfg.mode == "dense"), 0.5 * (cfg.mode == "sparse")
    return dense_weight, 1.0 - dense_weight


def demote_twins(fused: np.ndarray, xvecs: np.ndarray, same: np.ndarray, threshold: float) -> np.ndarray:
    """A candidate in another language whose cross-lingual cosine to one in the question's language
    reaches ``threshold`` is taken for its translation (the two versions of one manual): it is ranked
    right after that one, so the asker reads their own language first. ``xvecs`` are unit vectors."""
    other, mine = np.flatnonzero(~same), np.flatnonzero(same)
    if threshold >= 1 or not len(other) or not len(mine):
        return fused
    sims = xvecs[other] @ xvecs[mine].T
    cap = np.where(sims >= threshold, fused[mine][None, :], -np.inf).max(axis=1)
    out = fused.copy()
    out[other] = np.minimum(out[other], np.where(np.isfinite(cap), cap - 1e-9, np.inf))
    return out


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


@dataclass(frozen=True)
class _Channel:
    """One dense channel: its slice of the stored vector, the query's unit vector in it, and the factor
    that turns the slice's inner product back into a cosine."""

    name: str
    sl: slice
    q: np.ndarray
    scale: float


def _lang(row: ChunkRow | None) -> str:
    """A chunk's language (``lang`` metadata, set at chunking; detected for older rows)."""
    if row is None:
        return "en"
    return str(row.metadata.get("lang") or detect_lang(row.text))


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

    def _channels(self, query: str) -> list[_Channel]:
        """The query in each dense channel of the stored vectors (one, or ``embedder.parts``)."""
        parts = getattr(self.embedder, "parts", None)
        if not parts:
            q = self.embedder.embed_query(query)
            return [_Channel("dense", slice(0, len(q)), q, 1.0)]
        scale = float(np.sqrt(len(parts)))  # each part is stored at 1/sqrt(n) of its unit vector
        out, at = [], 0
        for (name, dim), q in zip(parts, self.embedder.embed_query_parts(query), strict=True):
            out.append(_Channel(name, slice(at, at + dim), q, scale))
            at += dim
        return out

    def _channel_search(self, ch: _Channel, n: int, allowed: np.ndarray | None) -> np.ndarray:
        """Ids of the best ``n`` chunks by this channel's cosine alone."""
        if ch.sl.start == 0 and ch.sl.stop == self.dense.dim:
            return self._dense_search(ch.q, n, allowed)[0]
        full = np.zeros(self.dense.dim, np.float32)
        full[ch.sl] = ch.q * ch.scale
        return self._dense_search(full, n, allowed)[0]

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
        use_xling = use_dense and max(cfg.xling_weight, cfg.xling_weight_other) > 0

        chans = self._channels(query) if use_dense or cfg.dedup_threshold < 1 else []
        if not use_xling:
            chans = chans[:1]
        ranked = [self._channel_search(c, n_cand, allowed) if use_dense else np.zeros(0, np.int64)
                  for c in chans]
        sparse = self.sparse
        bm25_all, bm25_max = sparse.score_all(query)
        sparse_ids, _ = sparse.top(bm25_all, n_cand, allowed) if use_sparse else (np.zeros(0, np.int64), None)

        seen = [i for r in ranked for i in r.tolist()] + sparse_ids.tolist()
        cand = np.array(list(dict.fromkeys(seen)), dtype=np.int64)
        if len(cand) == 0:
            return []
        vecs = self._vectors(cand) if chans else None
        cos = [vecs[:, c.sl] @ c.q * c.scale for c in chans] if vecs is not None else []
        dense_cos = cos[0] if cos else np.zeros(len(cand), np.float32)
        pos = sparse.positions(cand)
        bm25 = np.where(pos >= 0, bm25_all[np.maximum(pos, 0)], 0.0).astype(np.float32)
        rows: dict[int, ChunkRow] = {}
        same = np.ones(len(cand), bool)
        if use_xling or cfg.lang_bonus > 0:
            rows.update(self.docstore.get_chunks(cand))
            same = np.array([_lang(rows.get(int(i))) == qlang for i in cand], bool)
        dw = cfg.dense_weight_cjk if qlang == "zh" and cfg.dense_weight_cjk is not None else cfg.dense_weight
        dense_ids = ranked[0] if ranked else np.zeros(0, np.int64)
        fused = fuse(cand, dense_ids, sparse_ids, dense_cos, bm25, cfg, dw)
        total = sum(_mode_weights(cfg, dw))
        if use_xling and len(chans) > 1:
            wx = np.where(same, cfg.xling_weight, cfg.xling_weight_other)
            fused = (1 - wx) * fused + wx * total * channel_terms(cand, ranked[1], cos[1], cfg)
        fused = fused + cfg.lang_bonus * total * same
        if len(cos) > 1 and vecs is not None:
            xvecs = vecs[:, chans[1].sl] * chans[1].scale
            fused = demote_twins(fused, xvecs, same, cfg.twin_threshold)
        order = np.argsort(-fused, kind="stable")
        cand, dense_cos, bm25, fused = cand[order], dense_cos[order], bm25[order], fused[order]
        xcos = cos[1][order] if len(cos) > 1 else None
        vecs = vecs[order] if vecs is not None else None

        rerank_scores: np.ndarray | None = None
        if self.reranker is not None and len(cand):
            top = min(cfg.rerank_top, len(cand))
            rows.update(self.docstore.get_chunks([int(i) for i in cand[:top] if int(i) not in rows]))
            texts = [rows[int(i)].text if int(i) in rows else "" for i in cand[:top]]
            rs = np.asarray(self.reranker.score(query, texts), np.float32)
            new = np.concatenate([np.argsort(-rs, kind="stable"), np.arange(top, len(cand))])
            rerank_scores = np.concatenate([rs, np.full(len(cand) - top, np.nan, np.float32)])[new]
            cand, dense_cos, bm25, fused = cand[new], dense_cos[new], bm25[new], fused[new]
            xcos = xcos[new] if xcos is not None else None
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
            lang = _lang(row)
            meta = dict(row.metadata, doc_id=row.doc_id, position=row.position, row_id=int(cand[j]),
                        dense_score=float(dense_cos[j]), bm25_score=float(bm25[j]),
                        bm25_norm=float(bm25_norm[j]), fused=float(fused[j]), query_lang=qlang,
                        lang=lang, lang_match=lang == qlang)
            if xcos is not None:
                meta["xling_score"] = float(xcos[j])
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
