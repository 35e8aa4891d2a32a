"""Approximate dense search above a size threshold: FAISS IVF with float16 codes, and its settings.

Chosen by measurement (``benchmarks/scale.py --compare``, docs/benchmarks.md "Scale"): on chunks
synthesised from the handbook KB, IVF with float16 codes kept recall@10 >= 0.98 at 100k-1M chunks
with nprobe 32, builds ~4x faster than HNSW, holds each vector once (2 bytes a dimension), and supports
add and remove natively; HNSW (M 32-48, float16) lost recall as near-duplicate copies grew (0.89 at
300k with efSearch 256) and cannot remove. Codes are not residuals (``by_residual=False``), so a
list's codes are the vectors themselves in float16 and ``reconstruct`` needs no centroid.

Here: :class:`DenseIndexConfig` (the knobs), building an IVF from batches of vectors,
:class:`IvfBackend` (the IVF with its id bitmaps: tombstones, filters before the cut, compaction) and
the JSON sidecar that records the index type and parameters next to the index file. The exact backend
is :mod:`kb_assistant.store.ann_flat`; :class:`kb_assistant.store.vector.DenseIndex` picks one by size.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..config.pipeline import DenseIndexConfig
from ..storage_utils import atomic_write_json

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
_STORAGE = {"fp16": "QT_fp16", "sq8": "QT_8bit"}
_SUBSET_MAX = 20_000  # a very selective filter allowing at most this many is scanned as a decoded matrix


def faiss_module() -> Any:
    import faiss

    # batched searches use BLAS from a handful of queries on
    faiss.cvar.distance_compute_blas_threshold = 4
    return faiss


def empty_result(n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_queries, 1), -np.inf, dtype=np.float32), np.full((n_queries, 1), -1, np.int64)


def gpu_available() -> bool:
    faiss = faiss_module()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def new_ivf(dim: int, n: int, cfg: DenseIndexConfig, train: np.ndarray, *, use_gpu: bool = False) -> Any:
    """An empty, trained IVF index for about ``n`` vectors (k-means on ``train``; on the GPU if asked)."""
    faiss = faiss_module()
    nlist = max(1, min(cfg.nlist_for(n), len(train)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, getattr(faiss.ScalarQuantizer,
                                          _STORAGE[cfg.storage]), faiss.METRIC_INNER_PRODUCT, False)
    index.cp.niter = 10  # converged enough for search; half the default training time
    gpu_flat = None
    if use_gpu:  # pragma: no cover - GPU only: k-means assignments on the GPU
        try:
            gpu_flat = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))
            index.clustering_index = gpu_flat  # (the Python reference keeps it alive while training)
        except (AttributeError, RuntimeError) as exc:
            logger.warning("GPU k-means unavailable (%s): training on the CPU", exc)
    t0 = time.perf_counter()
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    if gpu_flat is not None:  # pragma: no cover - GPU only
        index.clustering_index = None
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and O(1) removes by id
    index.nprobe = cfg.nprobe
    logger.info("IVF%d,%s trained on %d vectors in %.1f s", nlist, cfg.storage, len(train),
                time.perf_counter() - t0)
    return index


def fill(index: Any, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> int:
    """Add ``(ids, vectors)`` batches; returns how many were added."""
    n = 0
    for ids, vecs in batches:
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32),
                               np.ascontiguousarray(ids, dtype=np.int64))
            n += len(ids)
    return n


def search(index: Any, q: np.ndarray, k: int, nprobe: int, sel: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """IVF search. A single query runs on the calling thread: waking (and then spinning) an OpenMP team
    for it cost ~100x the search itself on a loaded 2-core machine (39 ms vs 0.4 ms at 60k vectors)."""
    faiss = faiss_module()
    params = faiss.SearchParametersIVF()
    params.nprobe = int(min(nprobe, index.nlist))
    if sel is not None:
        params.sel = sel
    if len(q) > 1:
        return index.search(q, k, params=params)
    with one_thread(faiss):
        return index.search(q, k, params=params)


@contextmanager
def one_thread(faiss: Any) -> Iterator[None]:
    """FAISS on the calling thread only, for a single query (OpenMP settings are per calling thread)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def list_ids(index: Any) -> np.ndarray:
    """Every id stored in the index's inverted lists (unordered)."""
    faiss = faiss_module()
    inv = index.invlists
    parts = [np.zeros(0, np.int64)]
    for lst in range(index.nlist):
        size = inv.list_size(lst)
        if size:
            parts.append(faiss.rev_swig_ptr(inv.get_ids(lst), size).astype(np.int64))
    return np.concatenate(parts)


def remove(index: Any, ids: np.ndarray) -> int:
    """Physically remove ids (absent ones are skipped); O(len(ids)) through the direct map."""
    if not len(ids):
        return 0
    faiss = faiss_module()
    return int(index.remove_ids(faiss.IDSelectorArray(np.ascontiguousarray(ids, dtype=np.int64))))


def bitmap_selector(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """FAISS selector of the ids whose entry in the boolean ``mask`` is set (1-2 ns a test), and the
    packed bits it points into (keep them alive as long as the selector)."""
    faiss = faiss_module()
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits)), bits


def describe(index: Any, cfg: DenseIndexConfig, trained_on: int) -> dict[str, Any]:
    """Index type and parameters (written to the sidecar; the manifest can carry the same dict)."""
    faiss = faiss_module()
    info: dict[str, Any] = {"format": SIDECAR_FORMAT, "faiss": faiss.__version__, "dim": int(index.d),
                            "metric": "inner_product", "ann_threshold": cfg.ann_threshold}
    if isinstance(index, faiss.IndexIVF):
        info.update(kind="ivf", storage=cfg.storage, nlist=int(index.nlist), nprobe=cfg.nprobe,
                    trained_on=int(trained_on), stored=int(index.ntotal))
    else:
        info.update(kind="flat", storage="fp32", stored=int(index.ntotal))
    return info


def sidecar_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".json")


def write_sidecar(index_path: Path, info: dict[str, Any]) -> None:
    atomic_write_json(sidecar_path(index_path), dict(info, saved_at=time.time()))


def read_sidecar(index_path: Path) -> dict[str, Any]:
    import json

    path = sidecar_path(index_path)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


class IvfBackend:
    """An IVF index plus boolean bitmaps over the id space: ``live`` (searchable) and ``dead``
    (tombstones: removed, still in the lists). Searches pass FAISS a bitmap selector of the live ids,
    and of the live allowed ids when a filter applies, so both are applied before the cut to k."""

    kind = "ivf"

    def __init__(self, index: Any, dim: int, cfg: DenseIndexConfig, trained_on: int = 0,
                 use_gpu: bool = False) -> None:
        faiss = faiss_module()
        if index.direct_map.type != faiss.DirectMap.Hashtable:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.nprobe = cfg.nprobe
        self.index, self.dim, self.cfg, self.use_gpu = index, dim, cfg, use_gpu
        ids = list_ids(index)
        self.live = np.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=bool)
        self.live[ids] = True
        self.dead = np.zeros_like(self.live)
        self.n_live, self.n_dead = len(ids), 0
        self.trained_on = int(trained_on or len(ids))
        self.changed()

    def changed(self) -> None:
        self._gpu_index: Any = None
        self._sel_cache: dict[int | None, tuple[Any, ...]] = {}
        self._sub_cache: dict[int, tuple[Any, ...]] = {}

    @property
    def ntotal(self) -> int:
        return self.n_live

    def ids(self) -> np.ndarray:
        return np.flatnonzero(self.live).astype(np.int64)

    def _grow(self, max_id: int) -> None:
        if max_id < len(self.live):
            return
        size = max(max_id + 1, int(len(self.live) * 1.25) + 1024)
        live, dead = np.zeros(size, bool), np.zeros(size, bool)
        live[:len(self.live)], dead[:len(self.dead)] = self.live, self.dead
        self.live, self.dead = live, dead

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if int(ids.min()) < 0:
            raise ValueError("dense index ids must be >= 0 (docstore row ids)")
        self._grow(int(ids.max()))
        again = ids[self.live[ids] | self.dead[ids]]
        if len(again):  # a re-added id replaces its old vector
            self.n_live -= int(self.live[again].sum())
            self.n_dead -= int(self.dead[again].sum())
            remove(self.index, again)
            self.live[again] = self.dead[again] = False
        self.index.add_with_ids(vecs, ids)
        self.live[ids] = True
        self.n_live += len(ids)
        self.changed()

    def remove(self, ids: np.ndarray) -> None:
        """Tombstone ``ids``; compact once tombstones pass ``compact_share`` of the live vectors."""
        ids = ids[(ids >= 0) & (ids < len(self.live))]
        hit = ids[self.live[ids]]
        self.live[hit], self.dead[hit] = False, True
        self.n_live -= len(hit)
        self.n_dead += len(hit)
        if self.n_dead > self.cfg.compact_share * max(self.n_live, 1):
            self.compact()
        self.changed()

    def compact(self) -> None:
        """Physically remove the tombstoned vectors (O(tombstones) through the direct map)."""
        dead = np.flatnonzero(self.dead)
        remove(self.index, dead)
        self.dead[dead] = False
        self.n_dead = 0
        logger.info("dense index compacted: %d deleted vectors removed", len(dead))

    def read(self, ids: np.ndarray, live_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(those of ``ids`` stored, their float16-rounded vectors); tombstoned ones too unless
        ``live_only``."""
        ids = ids[(ids >= 0) & (ids < len(self.live))]
        ids = ids[self.live[ids] if live_only else self.live[ids] | self.dead[ids]]
        vecs = self.index.reconstruct_batch(ids) if len(ids) else np.zeros((0, self.dim), np.float32)
        return ids, np.asarray(vecs, dtype=np.float32)

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """nprobe scaled by 1 / the filter's share; every list when the filter is very selective, or
        when the probed lists held fewer than k allowed vectors (so k come back whenever k exist)."""
        n_ok, sel = self._selector(allowed) if allowed is not None or self.n_dead else (self.n_live, None)
        if n_ok == 0:
            return empty_result(len(q))
        k = max(1, min(k, n_ok))
        share = n_ok / max(self.n_live, 1)
        nlist = int(self.index.nlist)
        nprobe = nlist if share <= self.cfg.exact_filter_share else min(
            nlist, math.ceil(self.cfg.nprobe / share))
        if allowed is not None and nprobe == nlist and n_ok <= _SUBSET_MAX:
            return self._scan_subset(q, k, allowed)
        gpu = self._gpu() if sel is None and self.use_gpu else None
        scores, ids = gpu.search(q, k) if gpu is not None else search(self.index, q, k, nprobe, sel)
        short = (ids >= 0).sum(axis=1) < k
        if short.any() and nprobe < nlist:
            scores[short], ids[short] = search(self.index, q[short], k, nlist, sel)
        return scores, ids

    def _scan_subset(self, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k over the few vectors a very selective filter allows, decoded once per filter into
        a flat index: one small scan instead of one of every list (docs/scaling.md). Same scores as the
        lists' (float16-rounded vectors). FAISS, not numpy: a BLAS thread team woken for a 1 x 384 x 3k
        product cost 8 ms CPU on the loaded 2-core machine."""
        faiss = faiss_module()
        hit = self._sub_cache.get(id(allowed))
        if hit is None or hit[0] is not allowed:
            ids = self._sel_cache[id(allowed)][4]
            flat = faiss.IndexFlatIP(self.dim)
            flat.add(np.ascontiguousarray(self.index.reconstruct_batch(ids), dtype=np.float32))
            if len(self._sub_cache) >= 4:
                self._sub_cache.clear()
            hit = self._sub_cache[id(allowed)] = (allowed, ids, flat)
        _, ids, flat = hit
        if len(q) > 1:
            scores, at = flat.search(q, k)
        else:
            with one_thread(faiss):
                scores, at = flat.search(q, k)
        return scores, ids[at]

    def _gpu(self) -> Any:  # pragma: no cover - GPU only
        """The GPU copy for unfiltered searches (a selector is applied on the CPU index), or None."""
        if self._gpu_index is None:
            faiss = faiss_module()
            try:
                self._res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._res, 0, self.index)
                self._gpu_index.nprobe = self.cfg.nprobe
            except (AttributeError, RuntimeError) as exc:
                logger.warning("IVF index not copied to the GPU (%s): searching on the CPU", exc)
                self.use_gpu = False
        return self._gpu_index

    def _selector(self, allowed: np.ndarray | None) -> tuple[int, Any]:
        """(number of live allowed ids, a bitmap selector of them); cached per array object (the
        retriever re-uses one array per groups and filters) until the index changes."""
        key = None if allowed is None else id(allowed)
        hit = self._sel_cache.get(key)
        if hit is not None and hit[0] is allowed:
            return hit[1], hit[2]
        if allowed is None:
            mask = self.live
        else:
            a = np.asarray(allowed, dtype=np.int64)
            mask = np.zeros(len(self.live), dtype=bool)
            mask[a[(a >= 0) & (a < len(mask))]] = True
            mask &= self.live
        n_ok = int(np.count_nonzero(mask))
        sel, bits = bitmap_selector(mask)
        if len(self._sel_cache) >= 8:
            self._sel_cache.clear()
        self._sel_cache[key] = (allowed, n_ok, sel, bits,
                                (np.flatnonzero(mask).astype(np.int64) if n_ok <= _SUBSET_MAX else None))
        return n_ok, sel
