"""FAISS dense index over chunk row ids (IndexIDMap2 over inner product on normalised vectors).

The index file is a cache derived from the docstore: it is saved atomically, and on open it is
reconciled with the docstore's ids (missing vectors added from SQLite, stale ids removed), so a crash
between a docstore commit and an index save never leaves the two inconsistent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..storage_utils import atomic_write_with

logger = logging.getLogger(__name__)

# single CPU queries over at least this many vectors scan a float16 copy first (2x less memory read)
HALF_SCAN_MIN = 20_000
HALF_MARGIN = 64


def _faiss() -> Any:
    import faiss

    # batched searches use BLAS from a handful of queries on
    faiss.cvar.distance_compute_blas_threshold = 4
    return faiss


def gpu_available() -> bool:
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class DenseIndex:
    def __init__(self, path: Path, dim: int, *, use_gpu: bool | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        faiss = _faiss()
        if self.path.exists():
            index = faiss.read_index(str(self.path))
            if index.d != dim:
                logger.warning("dense index has dim %d, expected %d: rebuilding", index.d, dim)
                index = self._empty()
        else:
            index = self._empty()
        self.index = index
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._drop_caches()
        self.dirty = False

    def _empty(self) -> Any:
        faiss = _faiss()
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        faiss = _faiss()
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))
            self._changed()

    def remove(self, ids: np.ndarray | list[int]) -> None:
        if len(ids):
            faiss = _faiss()
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
            self._changed()

    def _changed(self) -> None:
        self.dirty = True
        self._drop_caches()

    def _drop_caches(self) -> None:
        """Forget everything derived from the vectors (GPU copy, id array, float16 copy, ACL mask)."""
        self._gpu_index: Any = None
        self._id_array: np.ndarray | None = None
        self._half: Any = None
        self._mask_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _numpy_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Zero-copy (vectors, ids) of the flat index, for a BLAS scan of single queries."""
        faiss = _faiss()
        flat = faiss.downcast_index(self.index.index)
        if not isinstance(flat, faiss.IndexFlat) or self.ntotal == 0:
            return None
        xb = faiss.rev_swig_ptr(flat.get_xb(), self.ntotal * self.dim).reshape(self.ntotal, self.dim)
        if self._id_array is None:
            self._id_array = self.ids()
        return xb, self._id_array

    def _search_index(self) -> Any:
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            faiss = _faiss()
            self._res = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._res, 0, self.index)
        return self._gpu_index

    def search(self, queries: np.ndarray, k: int, *,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (n_queries, k); missing slots have id -1.

        ``allowed`` restricts the search to those ids (filtering happens before the cut to k)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n_ok = self.ntotal if allowed is None else min(len(allowed), self.ntotal)
        if n_ok == 0:
            return np.full((len(q), 1), -np.inf, dtype=np.float32), np.full((len(q), 1), -1, np.int64)
        k = max(1, min(k, n_ok))
        view = None if self.use_gpu or len(q) > 1 else self._numpy_view()
        if view is None:
            if allowed is None:
                return self._search_index().search(q, k)
            faiss = _faiss()
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            return self.index.search(q, k, params=params)
        # one query: a numpy/BLAS scan beats this faiss build's generic (non-AVX2) kernel ~2x
        xb, ids = view
        mask = None if allowed is None else self._allowed_mask(allowed, ids)
        if mask is not None:
            k = max(1, min(k, int(mask.sum())))
        pool = self._half_prescan(xb, q[0], k, mask)
        if pool is None:
            scores = xb @ q[0]
            pool = np.arange(len(xb))
        else:  # exact float32 scores for the float16 scan's candidates only
            scores = np.full(len(xb), -np.inf, dtype=np.float32)
            scores[pool] = xb[pool] @ q[0]
        if mask is not None:
            scores[~mask] = -np.inf
        top = pool[np.argpartition(-scores[pool], k - 1)[:k]] if k < len(pool) else pool
        top = top[np.argsort(-scores[top], kind="stable")]
        out_ids = np.where(np.isfinite(scores[top]), ids[top], -1)
        return scores[top][None, :].astype(np.float32), out_ids[None, :]

    def _allowed_mask(self, allowed: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Boolean row mask of ``allowed`` ids; cached for the last array (the retriever re-uses the
        same array object for the same groups and filters until the docstore changes)."""
        cached = self._mask_cache
        if cached is not None and cached[0] is allowed and cached[1] is ids:
            return cached[2]
        mask = np.isin(ids, allowed)
        self._mask_cache = (allowed, ids, mask)
        return mask

    def _half_prescan(self, xb: np.ndarray, q: np.ndarray, k: int,
                      mask: np.ndarray | None = None) -> np.ndarray | None:
        """Row numbers of the best ``k + HALF_MARGIN`` rows by a float16 scan (half the memory traffic),
        or None below ``HALF_SCAN_MIN`` vectors. Float16 rounding moves a score by ~1e-4, far less than the
        gap the margin of extra candidates covers, so the exact re-scored top k is the exact top k."""
        n_pool = k + HALF_MARGIN
        if len(xb) < HALF_SCAN_MIN or n_pool >= len(xb):
            return None
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return None
        half = self._half
        if half is None or half.shape[0] != len(xb):
            half = self._half = torch.from_numpy(xb).to(torch.float16)
        scores = torch.mv(half, torch.from_numpy(q).to(torch.float16))
        if mask is not None:
            scores.masked_fill_(torch.from_numpy(~mask), float("-inf"))
        return scores.topk(n_pool, sorted=False).indices.numpy()

    def save(self) -> None:
        faiss = _faiss()
        atomic_write_with(self.path, lambda tmp: faiss.write_index(self.index, tmp))
        self.dirty = False

    def reconcile(self, store_ids: np.ndarray, fetch_vectors: Any) -> tuple[int, int]:
        """Make the index hold exactly ``store_ids``. Returns (added, removed)."""
        have = self.ids()
        extra = np.setdiff1d(have, store_ids, assume_unique=False)
        missing = np.setdiff1d(store_ids, have, assume_unique=False)
        if len(extra):
            self.remove(extra)
        for start in range(0, len(missing), 5000):
            part = missing[start:start + 5000]
            self.add(part, fetch_vectors(part))
        if len(extra) or len(missing):
            logger.info("dense index reconciled: %d added, %d removed", len(missing), len(extra))
        return len(missing), len(extra)
