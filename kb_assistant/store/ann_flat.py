"""Exact dense search (below the IVF threshold): ``IndexIDMap2`` over an inner-product flat index.

Single CPU queries skip FAISS's flat kernel: a numpy/BLAS scan, over a float16 copy first when the
index is large enough (half the memory read), re-scoring the float16 scan's candidates exactly. The
results equal FAISS's exact search (tested). The float16 copy exists only in this backend, i.e. below
the threshold; above it the IVF codes are the only copy of the vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ann import empty_result, faiss_module

# single CPU queries over at least this many vectors scan a float16 copy first (2x less memory read)
HALF_SCAN_MIN = 20_000
HALF_MARGIN = 64


class FlatBackend:
    kind = "flat"
    n_dead = 0

    def __init__(self, index: Any, dim: int, use_gpu: bool = False) -> None:
        self.index, self.dim, self.use_gpu = index, dim, use_gpu
        self.changed()

    @classmethod
    def empty(cls, dim: int, use_gpu: bool = False) -> FlatBackend:
        faiss = faiss_module()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), dim, use_gpu)

    def changed(self) -> None:
        """Forget everything derived from the vectors (GPU copy, id array, float16 copy, ACL mask)."""
        self._gpu_index: Any = None
        self._id_array: np.ndarray | None = None
        self._half: Any = None
        self._mask_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        if self._id_array is None:
            self._id_array = faiss_module().vector_to_array(self.index.id_map).astype(np.int64)
        return self._id_array

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self.index.add_with_ids(vecs, ids)
        self.changed()

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove_ids(faiss_module().IDSelectorBatch(ids))
        self.changed()

    def read(self, ids: np.ndarray, live_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(those of ``ids`` stored, their vectors)."""
        ids = ids[np.isin(ids, self.ids())]
        vecs = self.index.reconstruct_batch(ids) if len(ids) else np.zeros((0, self.dim), np.float32)
        return ids, np.asarray(vecs, dtype=np.float32)

    def _search_index(self) -> Any:
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            faiss = faiss_module()
            self._res = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._res, 0, self.index)
        return self._gpu_index

    def _numpy_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Zero-copy (vectors, ids) of the flat index, for a BLAS scan of single queries."""
        faiss = faiss_module()
        flat = faiss.downcast_index(self.index.index)
        if not isinstance(flat, faiss.IndexFlat) or self.ntotal == 0:
            return None
        xb = faiss.rev_swig_ptr(flat.get_xb(), self.ntotal * self.dim).reshape(self.ntotal, self.dim)
        return xb, self.ids()

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n_ok = self.ntotal if allowed is None else min(len(allowed), self.ntotal)
        if n_ok == 0:
            return empty_result(len(q))
        k = max(1, min(k, n_ok))
        view = None if self.use_gpu or len(q) > 1 else self._numpy_view()
        if view is None:
            if allowed is None:
                return self._search_index().search(q, k)
            faiss = faiss_module()
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            return self.index.search(q, k, params=params)
        # one query: a numpy/BLAS scan beats FAISS's flat kernel here ~2x
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
