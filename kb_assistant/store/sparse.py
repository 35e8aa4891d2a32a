"""BM25 keyword index over chunk row ids (the same ids as the FAISS index), exact under add/remove.

A *base* segment memory-mapped from the index file (term-major postings: rows and raw term frequencies;
document lengths; the ids sorted), an in-memory *delta* of the chunks added since the last save, and
tombstones for removed rows. A search reads only its terms' postings, so resident memory stays bounded
at a million chunks. BM25 weights are computed at query time and document frequencies, count and average
length are those of the live chunks: scores equal a from-scratch rebuild. Saving merges base, delta and
tombstones into a new file in bounded-memory blocks (dropping terms no live chunk has) and maps it.

Persistence: one uncompressed ``.npz`` (numeric arrays, the vocabulary as UTF-8 bytes, JSON meta; no
pickle) written atomically, its members memory-mapped in place; format-1 files (document-major) still
load. A cache of the docstore, reconciled with it on open (missing ids re-analysed, stale ids dropped).
"""

from __future__ import annotations

import json
import logging
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import ANALYZER_VERSION, analyze
from ..storage_utils import atomic_path
from .npz import read_npz, write_member

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
_BLOCK = 1 << 22  # postings per step of a merge
_BASE = ("ids", "doclen", "sorted_ids", "order", "cindptr", "crows", "ctfs", "cw")


def _term_major(term_ids: np.ndarray, values: Sequence[np.ndarray], n_terms: int) -> tuple[np.ndarray, ...]:
    """(indptr over ``n_terms``, each of ``values`` reordered term-major; stable, so rows stay ascending)."""
    order = np.argsort(term_ids, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(term_ids, minlength=n_terms))]).astype(np.int64)
    return (indptr, *[v[order] for v in values])


class SparseIndex:
    """Okapi BM25 (Lucene idf ``log(1 + (N - df + .5) / (df + .5))``) with parameters ``k1`` and ``b``."""

    def __init__(self, path: Path | None = None, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.path = Path(path) if path is not None else None
        self.k1, self.b = float(k1), float(b)
        self._lock = threading.RLock()
        self.damaged: str | None = None  # why the file could not be read (then the index starts empty)
        self._set_base(None, [])
        if self.path is not None and self.path.exists():
            self._load(self.path)

    # -- state --------------------------------------------------------------------------------------
    def _set_base(self, arrays: dict[str, np.ndarray] | None, terms: list[str]) -> None:
        self._b = arrays or {k: np.zeros(int(k == "cindptr"), np.float32 if k in ("doclen", "ctfs", "cw")
                                         else np.int32 if k == "crows" else np.int64) for k in _BASE}
        self.terms = terms
        self.vocab = {t: i for i, t in enumerate(terms)}
        nb = len(self._b["ids"])
        self._alive = np.ones(nb, dtype=bool)
        self._n_live, self._n_dead_base = nb, 0
        self._total_len = float(np.sum(self._b["doclen"], dtype=np.float64))
        self._d_ids: list[int] = []  # the delta: chunks added since the base was written
        self._d_tids: list[np.ndarray] = []
        self._d_tfs: list[np.ndarray] = []
        self._d_len: list[float] = []
        self._d_pos: dict[int, int] = {}  # live delta rows: id -> position in the _d_ lists
        self._d_df = np.zeros(len(terms), np.int64)
        self._changed(dirty=False)

    def _changed(self, dirty: bool = True) -> None:
        self._delta: tuple[np.ndarray, ...] | None = None
        self._row_ids: np.ndarray | None = None
        self._pos_cache: dict[int, tuple[Any, np.ndarray]] = {}
        self.dirty = dirty

    @property
    def ids(self) -> np.ndarray:
        """Row id of every scored row (the order of ``score_all``); -1 for a removed row."""
        if self._row_ids is None:
            base = np.where(self._alive, self._b["ids"], -1)
            delta = np.full(len(self._d_ids), -1, np.int64)
            delta[list(self._d_pos.values())] = list(self._d_pos)
            self._row_ids = np.concatenate([base, delta]).astype(np.int64)
        return self._row_ids

    def __len__(self) -> int:
        return self._n_live

    # -- persistence --------------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            z = read_npz(path)
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            terms = bytes(z["vocab"]).decode("utf-8").split("\n") if len(z["vocab"]) else []
            if meta.get("analyzer") != ANALYZER_VERSION or meta.get("format") not in (1, FORMAT_VERSION):
                logger.warning("sparse index %s has an old format/analyzer: rebuilding", path)
                return
            if meta["format"] == 1:  # document-major arrays, read into memory: derive the rest once
                ids, indptr = np.asarray(z["ids"], np.int64), np.asarray(z["indptr"], np.int64)
                tids, tfs = np.asarray(z["term_ids"], np.int64), np.asarray(z["tfs"], np.float32)
                rows = np.repeat(np.arange(len(ids), dtype=np.int32), np.diff(indptr))
                order = np.argsort(ids, kind="stable")
                cindptr, crows, ctfs = _term_major(tids, [rows, tfs], len(terms))
                doclen = np.bincount(rows, tfs, len(ids)).astype(np.float32)
                z = {"ids": ids, "doclen": doclen, "order": order, "sorted_ids": ids[order],
                     "cindptr": cindptr, "crows": crows, "ctfs": ctfs,
                     "cw": self._weights(crows, ctfs, doclen)}
            self._set_base({k: z[k] for k in _BASE}, terms)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("sparse index %s unreadable (%s): rebuilding from the docstore", path, exc)
            self.damaged = f"not a readable index ({exc})"
            self._set_base(None, [])

    def save(self, path: Path | None = None) -> None:
        """Merge base, delta and tombstones into a new file (atomically), then map it."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("SparseIndex.save needs a path")
        with self._lock:
            with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
                self._write_merged(zf)
            self._load(target)

    def _write_merged(self, zf: zipfile.ZipFile) -> None:
        b, alive, nb = self._b, self._alive, len(self._b["ids"])
        d_live = np.sort(np.fromiter(self._d_pos.values(), np.int64, len(self._d_pos)))
        n_base_live = int(alive.sum())
        new_ids = np.concatenate([b["ids"][alive], np.asarray(self._d_ids, np.int64)[d_live]])
        doclen = np.concatenate([b["doclen"][alive], np.asarray(self._d_len, np.float32)[d_live]])
        order = np.argsort(new_ids, kind="stable")
        counts = self._live_df_all()
        keep_terms = counts > 0  # terms no live chunk contains are dropped (no trace of a deletion)
        cindptr = np.concatenate([[0], np.cumsum(counts[keep_terms])]).astype(np.int64)
        for name, dtype, arr in (("ids", np.int64, new_ids), ("doclen", np.float32, doclen),
                                 ("order", np.int64, order), ("sorted_ids", np.int64, new_ids[order]),
                                 ("cindptr", np.int64, cindptr)):
            write_member(zf, name, dtype, len(arr), [arr])
        row_map = np.full(nb, -1, np.int64)
        row_map[alive] = np.arange(n_base_live)
        d_map = np.full(len(self._d_ids), -1, np.int64)
        d_map[d_live] = n_base_live + np.arange(len(d_live))
        for name, dtype, what in (("crows", np.int32, "rows"), ("ctfs", np.float32, "tfs")):
            write_member(zf, name, dtype, int(cindptr[-1]), self._merged(what, row_map, d_map))
        pairs = zip(self._merged("rows", row_map, d_map), self._merged("tfs", row_map, d_map), strict=True)
        write_member(zf, "cw", np.float32, int(cindptr[-1]), (self._weights(r, t, doclen) for r, t in pairs))
        vocab = "\n".join(t for t, k in zip(self.terms, keep_terms, strict=True) if k).encode("utf-8")
        meta = {"format": FORMAT_VERSION, "analyzer": ANALYZER_VERSION, "k1": self.k1, "b": self.b,
                "rows": len(new_ids), "postings": int(cindptr[-1])}
        for name, data in (("vocab", vocab), ("meta", json.dumps(meta).encode("utf-8"))):
            write_member(zf, name, np.uint8, len(data), [np.frombuffer(data, np.uint8)])

    def _weights(self, rows: np.ndarray, tfs: np.ndarray, doclen: np.ndarray) -> np.ndarray:
        """BM25 term weights (idf excluded) of postings, for the document lengths ``doclen``."""
        avgdl = max(float(np.mean(doclen, dtype=np.float64)) if len(doclen) else 1.0, 1e-9)
        c1, c2 = np.float32(self.k1 * (1 - self.b)), np.float32(self.k1 * self.b / avgdl)
        tfs = np.asarray(tfs, np.float32)
        return tfs * np.float32(self.k1 + 1) / (tfs + c1 + c2 * doclen[rows])

    def _term_blocks(self) -> Iterator[tuple[int, int]]:
        """Term ranges [lo, hi) covering the vocabulary, each with about ``_BLOCK`` base postings."""
        cp = self._b["cindptr"]
        cuts = np.searchsorted(cp, np.arange(_BLOCK, int(cp[-1]), _BLOCK))
        bounds = np.unique(np.concatenate([[0], cuts, [len(self.terms)]])).tolist()
        yield from zip(bounds[:-1], bounds[1:], strict=True)

    def _base_postings(self, lo_t: int, hi_t: int, with_terms: bool = True) -> tuple[Any, Any, Any]:
        """(term, base row, tf) of every base posting of terms [lo_t, hi_t), tombstoned rows included;
        rows and tfs are views of the mapped file."""
        cp, n = self._b["cindptr"], len(self._b["cindptr"]) - 1
        lo_t, top = min(lo_t, n), min(hi_t, n)
        terms = np.repeat(np.arange(lo_t, top), np.diff(cp[lo_t:top + 1])) if with_terms else None
        return terms, self._b["crows"][cp[lo_t]:cp[top]], self._b["ctfs"][cp[lo_t]:cp[top]]

    def _live_df_all(self) -> np.ndarray:
        """Live document frequency of every term (one pass over the postings if rows were removed)."""
        cp = self._b["cindptr"]
        df = np.zeros(len(self.terms), np.int64)
        df[:len(cp) - 1] = np.diff(cp)
        if self._n_dead_base:
            for lo_t, hi_t in self._term_blocks():
                terms, rows, _ = self._base_postings(lo_t, hi_t)
                df -= np.bincount(terms[~self._alive[rows]], minlength=len(df))
        return df + self._d_df[:len(df)]

    def _merged(self, what: str, row_map: np.ndarray, d_map: np.ndarray) -> Iterator[np.ndarray]:
        """New row numbers ("rows") or tfs ("tfs") of the live postings, term-major, base then delta."""
        dptr, drows, dtfs, dterms, _ = self._delta_csc()
        nb = len(self._b["ids"])
        for lo_t, hi_t in self._term_blocks():
            d = slice(dptr[lo_t], dptr[hi_t])
            delta = d_map[drows[d] - nb] if what == "rows" else dtfs[d]
            terms, rows, tfs = self._base_postings(lo_t, hi_t, with_terms=len(delta) > 0)
            keep = self._alive[rows] if self._n_dead_base else slice(None)
            # with nothing removed, base rows keep their numbers
            base = tfs[keep] if what == "tfs" else row_map[rows[keep]] if self._n_dead_base else rows
            if not len(delta):
                yield base
                continue
            # a delta posting goes after the base postings of its term (both lists are term-major)
            at = np.searchsorted(terms[keep], dterms[d], side="right") + np.arange(len(delta))
            out = np.empty(len(base) + len(delta), base.dtype)
            is_delta = np.zeros(len(out), bool)
            is_delta[at] = True
            out[at], out[~is_delta] = delta, base
            yield out

    # -- updates ------------------------------------------------------------------------------------
    def add(self, ids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        self.add_tokens(ids, [analyze(t) for t in texts])

    def add_tokens(self, ids: Sequence[int] | np.ndarray, tokens: Iterable[Sequence[str]]) -> None:
        """Add analysed chunks. Re-adding an id that is present replaces it."""
        ids = [int(i) for i in ids]
        with self._lock:
            present = self.contains(ids)
            if present.any():
                self.remove([i for i, p in zip(ids, present, strict=True) if p])
            for row_id, toks in zip(ids, tokens, strict=True):
                counts = Counter(toks)
                tids = np.fromiter((self._term_id(t) for t in counts), dtype=np.int32, count=len(counts))
                tfs = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
                if len(self._d_df) < len(self.terms):
                    self._d_df = np.concatenate([self._d_df, np.zeros(len(self.terms), np.int64)])
                self._d_df[tids] += 1
                self._d_pos[row_id] = len(self._d_ids)
                self._d_ids.append(row_id)
                self._d_tids.append(tids)
                self._d_tfs.append(tfs)
                self._d_len.append(float(tfs.sum()))
                self._n_live += 1
                self._total_len += self._d_len[-1]
            self._changed()

    def _term_id(self, term: str) -> int:
        tid = self.vocab.setdefault(term, len(self.terms))
        if tid == len(self.terms):
            self.terms.append(term)
        return tid

    def contains(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.positions(np.asarray(ids, dtype=np.int64)) >= 0

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Drop chunks (tombstoned until the next save, statistics updated). Returns how many were present."""
        with self._lock:
            pos = self.positions(np.asarray(ids, dtype=np.int64))
            pos = np.unique(pos[pos >= 0])
            if not len(pos):
                return 0
            nb = len(self._b["ids"])
            base = pos[pos < nb]
            self._alive[base] = False
            self._n_dead_base += len(base)
            self._total_len -= float(np.sum(self._b["doclen"][base], dtype=np.float64))
            for j in (pos[pos >= nb] - nb).tolist():
                self._d_df[self._d_tids[j]] -= 1
                self._total_len -= self._d_len[j]
                del self._d_pos[self._d_ids[j]]
            self._n_live -= len(pos)
            self._changed()
            return len(pos)

    def reconcile(self, store_ids: np.ndarray, fetch_texts: Callable[[np.ndarray], Sequence[str]]) -> tuple[
            int, int]:
        """Make the index hold exactly ``store_ids``. Returns (added, removed)."""
        with self._lock:
            have = np.sort(self.ids[self.ids >= 0])
            extra = np.setdiff1d(have, store_ids)
            missing = np.setdiff1d(store_ids, have)
            if len(extra):
                self.remove(extra)
            for start in range(0, len(missing), 2000):
                part = missing[start:start + 2000]
                self.add(part, fetch_texts(part))
            if len(extra) or len(missing):
                logger.info("sparse index reconciled: %d added, %d removed", len(missing), len(extra))
            return len(missing), len(extra)

    # -- search -------------------------------------------------------------------------------------
    def _delta_csc(self) -> tuple[np.ndarray, ...]:
        """Term-major postings of the live delta: (indptr over all terms, rows numbered after the base
        rows, tfs, terms), and the length of every delta row."""
        if self._delta is None:
            live = sorted(self._d_pos.values())
            tids = np.concatenate([self._d_tids[j] for j in live]) if live else np.zeros(0, np.int32)
            tfs = np.concatenate([self._d_tfs[j] for j in live]) if live else np.zeros(0, np.float32)
            rows = np.repeat(np.asarray(live, np.int64) + len(self._b["ids"]),
                             [len(self._d_tids[j]) for j in live])
            ptr, rows, tfs, terms = _term_major(tids, [rows, tfs, tids], len(self.terms))
            self._delta = (ptr, rows, tfs, terms, np.asarray(self._d_len, np.float32))
        return self._delta

    def doc_freq(self, tid: int) -> int:
        """Live document frequency of a term id."""
        cp, n = self._b["cindptr"], int(self._d_df[tid]) if tid < len(self._d_df) else 0
        if tid < len(cp) - 1:
            lo, hi = cp[tid], cp[tid + 1]
            n += int(hi - lo)
            if self._n_dead_base and hi > lo:
                n -= int(np.count_nonzero(~self._alive[np.asarray(self._b["crows"][lo:hi])]))
        return n

    def idf(self, term_ids: np.ndarray) -> np.ndarray:
        df = np.asarray([self.doc_freq(int(t)) for t in term_ids], np.float64)
        return np.log1p((self._n_live - df + 0.5) / (df + 0.5))

    def query_terms(self, query: str) -> tuple[np.ndarray, int]:
        """Known term ids of the query (unique) and the number of query terms not in the index."""
        terms = list(dict.fromkeys(analyze(query)))
        known = [self.vocab[t] for t in terms if t in self.vocab and self.doc_freq(self.vocab[t]) > 0]
        return np.asarray(known, dtype=np.int64), len(terms) - len(known)

    def score_all(self, query: str) -> tuple[np.ndarray, float]:
        """BM25 score of every row (aligned with ``self.ids``; 0 for removed rows) and the query's
        maximum score ``(k1 + 1) * sum(idf)`` over its terms, unknown terms counted at the idf of a term
        no chunk contains, so ``score / max`` is a query-length-free match strength in [0, 1)."""
        with self._lock:
            b, nb = self._b, len(self._b["ids"])
            dptr, drows, dtfs, _, d_doclen = self._delta_csc()
            scores = np.zeros(nb + len(self._d_ids), dtype=np.float32)
            tids, n_unknown = self.query_terms(query)
            if self._n_live == 0:
                return scores, 1.0
            idf = self.idf(tids)
            avgdl = max(self._total_len / self._n_live, 1e-9)
            c1, c2 = np.float32(self.k1 * (1 - self.b)), np.float32(self.k1 * self.b / avgdl)
            baked = not self._d_ids and not self._n_dead_base  # the file's statistics still hold
            for tid, weight in zip(tids.tolist(), idf.tolist(), strict=True):
                w = np.float32((self.k1 + 1) * weight)
                if tid < len(b["cindptr"]) - 1:
                    lo, hi = b["cindptr"][tid], b["cindptr"][tid + 1]
                    rows, tf = b["crows"][lo:hi], b["ctfs"][lo:hi]
                    scores[rows] += (b["cw"][lo:hi] * np.float32(weight) if baked else
                                     tf * w / (tf + c1 + c2 * b["doclen"][rows]))
                rows, tf = drows[dptr[tid]:dptr[tid + 1]], dtfs[dptr[tid]:dptr[tid + 1]]
                scores[rows] += tf * w / (tf + c1 + c2 * d_doclen[rows - nb])
            if self._n_live < len(scores):
                scores[self.ids < 0] = 0.0
            unknown_idf = float(np.log1p((self._n_live + 0.5) / 0.5))
            max_score = (self.k1 + 1.0) * (float(idf.sum()) + n_unknown * unknown_idf)
            return scores, max(max_score, 1e-9)

    def positions(self, row_ids: np.ndarray) -> np.ndarray:
        """Positions in ``self.ids`` of the given live row ids (-1 where absent)."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        out = np.full(len(row_ids), -1, dtype=np.int64)
        sorted_ids, order = self._b["sorted_ids"], self._b["order"]
        if len(sorted_ids) and len(row_ids):
            i = np.clip(np.searchsorted(sorted_ids, row_ids), 0, len(sorted_ids) - 1)
            rows = np.asarray(order[i])
            hit = (np.asarray(sorted_ids[i]) == row_ids) & self._alive[rows]
            out[hit] = rows[hit]
        if self._d_pos:  # the delta is small (since the last save): a dict lookup per id
            nb, get = len(self._b["ids"]), self._d_pos.get
            found = [(n, j) for n, j in enumerate(map(get, row_ids.tolist())) if j is not None]
            if found:
                at, js = zip(*found, strict=True)
                out[list(at)] = nb + np.asarray(js, np.int64)
        return out

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (row ids, raw BM25 scores) with score > 0, restricted to ``allowed`` row ids if given."""
        scores, _ = self.score_all(query)
        return self.top(scores, k, allowed)

    def top(self, scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[
            np.ndarray, np.ndarray]:
        pos = None if allowed is None else self._allowed_positions(allowed)
        cand_scores = scores if pos is None else scores[pos]
        # the k-th largest of any subset bounds the k-th largest from below: a 1/16 sample's cuts the
        # candidates to ~16 k in one pass instead of a partition of every matching row
        sample = cand_scores[::16]
        thr = np.partition(sample, len(sample) - k)[len(sample) - k] if len(sample) > 4 * k else 0.0
        nz = np.flatnonzero(cand_scores >= thr) if thr > 0 else np.flatnonzero(cand_scores > 0)
        if len(nz) > k:
            nz = nz[np.argpartition(-cand_scores[nz], k - 1)[:k]]
        nz = nz[np.argsort(-cand_scores[nz], kind="stable")]
        return self.ids[nz if pos is None else pos[nz]], cand_scores[nz]

    def _allowed_positions(self, allowed: np.ndarray) -> np.ndarray:
        """Row positions of the live ``allowed`` ids, cached per array object until the index changes
        (the retriever re-uses one array per groups and filters)."""
        hit = self._pos_cache.get(id(allowed))
        if hit is not None and hit[0] is allowed:
            return hit[1]
        pos = self.positions(np.asarray(allowed, dtype=np.int64))
        if len(self._pos_cache) >= 8:
            self._pos_cache.clear()
        self._pos_cache[id(allowed)] = (allowed, pos[pos >= 0])
        return self._pos_cache[id(allowed)][1]
