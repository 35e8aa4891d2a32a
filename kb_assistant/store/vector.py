"""FAISS dense index over chunk row ids: an exact scan below a size threshold, IVF above it.

Below ``DenseIndexConfig.ann_threshold`` vectors the backend is exact (:mod:`.ann_flat`). When the
index reaches the threshold, an IVF with float16 codes (:mod:`.ann`) is built in a background thread
from the current vectors while the exact index keeps serving; it is swapped in under the lock, with the
adds and removes made meanwhile replayed on it, and from then on holds the only copy of each vector.
Deleted ids are tombstones that the search skips before the cut to k (with the ACL filter, in one id
bitmap) and that are removed once they pass ``compact_share`` or when the index is saved. The IVF
retrains the same way when it has grown ``retrain_growth`` times since its training.

The index file is a cache derived from the docstore: saved atomically, with a JSON sidecar recording
its type and parameters (``dense.faiss.json``), and reconciled with the docstore's ids on open (missing
vectors added from SQLite, an IVF built straight from them when the index is empty and large enough;
stale ids removed). A build lives in memory until the next save, so a crash or a kill during a rebuild
leaves the previous index file serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..storage_utils import atomic_write_with
from . import ann
from .ann import DenseIndexConfig, IvfBackend, gpu_available
from .ann_flat import FlatBackend

__all__ = ["DenseIndex", "DenseIndexConfig", "gpu_available"]

logger = logging.getLogger(__name__)

_BATCH = 50_000  # vectors read and added per step of a build
Reader = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Build:
    snapshot: np.ndarray  # the live ids when the build started
    touched: list[np.ndarray] = field(default_factory=list)  # ids added or removed since
    thread: threading.Thread | None = None
    error: BaseException | None = None


class DenseIndex:
    def __init__(self, path: Path, dim: int, *, use_gpu: bool | None = None,
                 config: DenseIndexConfig | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.config = config or DenseIndexConfig()
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._lock = threading.RLock()
        self._build: _Build | None = None
        index = None
        if self.path.exists():
            index = ann.faiss_module().read_index(str(self.path))
            if index.d != dim:
                logger.warning("dense index has dim %d, expected %d: rebuilding", index.d, dim)
                index = None
        self._backend: FlatBackend | IvfBackend = FlatBackend.empty(dim, self.use_gpu)
        if index is not None:
            side = ann.read_sidecar(self.path)
            self._install(index, int(side.get("trained_on") or 0) if side.get("kind") == "ivf" else 0)
        self.dirty = False

    def _install(self, index: Any, trained_on: int = 0) -> None:
        faiss = ann.faiss_module()
        if isinstance(index, faiss.IndexIVF):
            self._backend = IvfBackend(index, self.dim, self.config, trained_on, self.use_gpu)
        else:
            self._backend = FlatBackend(index, self.dim, self.use_gpu)
        self.dirty = True

    # -- state --------------------------------------------------------------------------------------
    @property
    def index(self) -> Any:
        """The serving FAISS index (``reconstruct_batch`` works on both kinds)."""
        return self._backend.index

    @property
    def kind(self) -> str:
        """"flat" (exact) or "ivf" (approximate)."""
        return self._backend.kind

    @property
    def ntotal(self) -> int:
        return self._backend.ntotal

    @property
    def building(self) -> bool:
        return self._build is not None

    def ids(self) -> np.ndarray:
        with self._lock:
            return self._backend.ids().copy()

    def describe(self) -> dict[str, Any]:
        """Index type and parameters (as in the sidecar), e.g. for the knowledge base's manifest."""
        with self._lock:
            b = self._backend
            return dict(ann.describe(b.index, self.config, getattr(b, "trained_on", 0)), ntotal=b.ntotal,
                        tombstones=b.n_dead)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids`` in order (float16-rounded in an IVF); KeyError if one is absent."""
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            got, vecs = self._backend.read(ids, live_only=True)
        if len(got) != len(ids):  # read() keeps the order of the ids it finds
            raise KeyError(f"{len(ids) - len(got)} id(s) not in the dense index")
        return vecs

    # -- updates ------------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            self._backend.add(ids, np.ascontiguousarray(vectors, dtype=np.float32))
            self._touch(ids)
            self._maybe_build()

    def remove(self, ids: np.ndarray | list[int]) -> None:
        if not len(ids):
            return
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        with self._lock:
            self._backend.remove(ids)
            self._touch(ids)

    def _touch(self, ids: np.ndarray) -> None:
        if self._build is not None:
            self._build.touched.append(np.array(ids, dtype=np.int64))
        self.dirty = True

    # -- building the approximate index -------------------------------------------------------------
    def _maybe_build(self) -> None:
        b, cfg = self._backend, self.config
        if self._build is None and (
                (b.kind == "flat" and b.ntotal >= cfg.ann_threshold)
                or (isinstance(b, IvfBackend) and b.ntotal >= b.trained_on * cfg.retrain_growth)):
            self._start_build()

    def rebuild(self, wait: bool = True) -> None:
        """(Re)build the index for its current size now (IVF at or above the threshold, else exact)."""
        with self._lock:
            if self._build is None:
                self._start_build()
            build = self._build
        if wait:
            self.wait_for_build()
            if build is not None and build.error is not None:
                raise build.error

    def wait_for_build(self, timeout: float | None = None) -> bool:
        """Wait for a background build to be swapped in; False if still running after ``timeout``."""
        build = self._build
        if build is not None and build.thread is not None:
            build.thread.join(timeout)
            return not build.thread.is_alive()
        return True

    close = wait_for_build

    def _start_build(self) -> None:
        build = self._build = _Build(self._backend.ids().copy())
        logger.info("dense index: building %s over %d vectors%s",
                    "an IVF" if len(build.snapshot) >= self.config.ann_threshold else "an exact index",
                    len(build.snapshot), " in the background" if self.config.background else "")
        if self.config.background:
            build.thread = threading.Thread(target=self._run_build, args=(build,), daemon=True,
                                            name="kb-dense-build")
            build.thread.start()
        else:
            self._run_build(build)

    def _run_build(self, build: _Build) -> None:
        faiss = ann.faiss_module()
        if build.thread is not None:  # OpenMP threads are per calling thread: leave a core to searches
            faiss.omp_set_num_threads(self.config.build_threads or max(1, faiss.omp_get_max_threads() - 1))
        try:
            new = self._build_from(build.snapshot, self._read)
            with self._lock:
                self._swap(build, new)
        except BaseException as exc:
            logger.exception("dense index build failed; the previous index keeps serving")
            build.error = exc
            with self._lock:
                self._build = None
            if build.thread is None:
                raise

    def _read(self, ids: np.ndarray, live_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:  # one batch at a time: searches and updates interleave with a build
            return self._backend.read(ids, live_only)

    def _build_from(self, ids: np.ndarray, read: Reader) -> Any:
        """A new FAISS index over ``ids`` (vectors from ``read``): IVF at or above the threshold."""
        n = len(ids)
        batches = (read(ids[s:s + _BATCH]) for s in range(0, n, _BATCH))
        if n < self.config.ann_threshold:
            index = FlatBackend.empty(self.dim).index
        else:
            cfg = self.config
            n_train = min(n, cfg.max_train, cfg.nlist_for(n) * cfg.train_per_list)
            sample = np.sort(np.random.default_rng(0).choice(ids, n_train, replace=False))
            index = ann.new_ivf(self.dim, n, cfg, read(sample)[1], use_gpu=self.use_gpu)
        ann.fill(index, batches)
        return index

    def _swap(self, build: _Build, new: Any) -> None:
        """Serve ``new``, first replaying on it every add and remove made since the build started."""
        faiss = ann.faiss_module()
        if build.touched:
            touched = np.unique(np.concatenate(build.touched))
            if isinstance(new, faiss.IndexIVF):
                ann.remove(new, touched)
            else:
                new.remove_ids(faiss.IDSelectorBatch(touched))
            ann.fill(new, [self._backend.read(touched, live_only=True)])
        self._install(new, len(build.snapshot))
        self._build = None
        logger.info("dense index: %s over %d vectors now serving (%d changes replayed)", self.kind,
                    self.ntotal, sum(len(t) for t in build.touched))

    # -- search -------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (n_queries, k); missing slots have id -1.

        ``allowed`` restricts the search to those ids (filtering happens before the cut to k)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        with self._lock:
            self._maybe_build()  # e.g. an exact index saved past the threshold by an older version
            return self._backend.search(q, k, allowed)

    # -- persistence --------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the serving index atomically (tombstones removed first), then its sidecar."""
        faiss = ann.faiss_module()
        with self._lock:
            if isinstance(self._backend, IvfBackend) and self._backend.n_dead:
                self._backend.compact()
            atomic_write_with(self.path, lambda tmp: faiss.write_index(self._backend.index, tmp))
            ann.write_sidecar(self.path, self.describe())
            self.dirty = False

    def reconcile(self, store_ids: np.ndarray, fetch_vectors: Any) -> tuple[int, int]:
        """Make the index hold exactly ``store_ids``. Returns (added, removed). An empty index facing at
        least ``ann_threshold`` ids builds its IVF straight from ``fetch_vectors`` (the docstore)."""
        store_ids = np.asarray(store_ids, dtype=np.int64)
        with self._lock:
            have = self._backend.ids()
            if not len(have) and len(store_ids) >= self.config.ann_threshold:
                self._install(self._build_from(store_ids, lambda part: (part, fetch_vectors(part))),
                              len(store_ids))
                logger.info("dense index built from the docstore: %s over %d vectors", self.kind,
                            self.ntotal)
                return len(store_ids), 0
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
