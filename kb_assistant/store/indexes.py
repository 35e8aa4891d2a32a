"""The derived indexes of a knowledge base, owned in one place.

Both the dense (FAISS) and the sparse (BM25) index follow one small protocol (:class:`DerivedIndex`):
``add`` / ``remove`` / ``search`` / ``save`` / ``reconcile``, keyed by the docstore's chunk row ids.
:class:`Indexes` opens them lazily from their files, reconciles them with the docstore (the truth) on
open, feeds both on every change and saves both; nothing else adds to or removes from an index.

The index files are caches: one that is missing, truncated or corrupt (it fails to load, or holds an
id twice) is rebuilt from the docstore on open, with a warning. :meth:`Indexes.verify` reports the state
of every derived file without touching it; :meth:`Indexes.rebuild` (``kb repair``) rebuilds them all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..calibration import CALIBRATION_FILE
from ..errors import KBError
from ..lazy import Lazy
from ..storage_utils import remove_stale_temps

if TYPE_CHECKING:
    from ..config.pipeline import DenseIndexConfig
    from .docstore import ChunkRow, DocStore
    from .sparse import SparseIndex
    from .vector import DenseIndex

logger = logging.getLogger(__name__)

DENSE_FILE = "dense.faiss"
SPARSE_FILE = "sparse/bm25.npz"
#: errors that say nothing about the index file (a missing package or model, the docstore itself)
_NOT_DAMAGE = (ImportError, KBError, sqlite3.Error)


class DerivedIndex(Protocol):
    """An index derived from the docstore, keyed by chunk row ids."""

    dirty: bool

    def add(self, ids: np.ndarray, items: Any) -> None:
        """Index ``items`` (vectors for the dense index, texts for the sparse one) under ``ids``."""

    def remove(self, ids: Sequence[int] | np.ndarray) -> Any:
        """Forget ``ids``."""

    def search(self, query: Any, k: int, allowed: np.ndarray | None = None) -> tuple[Any, Any]:
        """The best ``k`` among ``allowed`` ids (all when None)."""

    def save(self) -> None:
        """Write the index atomically to its file."""

    def reconcile(self, store_ids: np.ndarray, fetch: Callable[[np.ndarray], Any]) -> tuple[int, int]:
        """Make the index hold exactly ``store_ids`` (``fetch`` gives missing items); (added, removed)."""


def sparse_text(row: ChunkRow) -> str:
    """What BM25 indexes for a chunk: its title and heading, then its text."""
    meta = row.metadata
    head = " ".join(str(meta[k]) for k in ("title", "heading") if meta.get(k))
    return f"{head}\n{row.text}" if head else row.text


class Indexes:
    """The dense and the sparse index of one knowledge base directory."""

    def __init__(self, path: Path, docstore: DocStore, dim: int | Callable[[], int],
                 dense_config: DenseIndexConfig | None = None) -> None:
        self.path = Path(path)
        self.docstore = docstore
        self._dim = dim
        self.dense_config = dense_config
        self._dense: Lazy[DenseIndex] = Lazy(self._open_dense)
        self._sparse: Lazy[SparseIndex] = Lazy(self._open_sparse)

    @property
    def dim(self) -> int:
        return int(self._dim() if callable(self._dim) else self._dim)

    def sparse_texts(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        rows = self.docstore.get_chunks(ids)
        return [sparse_text(rows[int(i)]) if int(i) in rows else "" for i in ids]

    def _open_dense(self) -> DenseIndex:
        from .vector import DenseIndex

        dim = self.dim

        def make(path: Path) -> DenseIndex:
            return DenseIndex(path, dim, config=self.dense_config)

        def check(index: DenseIndex) -> None:
            ids = index.ids()
            if len(np.unique(ids)) != len(ids):
                raise ValueError(f"{len(ids) - len(np.unique(ids))} ids held twice")

        return self._open_checked(DENSE_FILE, make, lambda ids: self.docstore.vectors(ids, dim), check)

    def _open_sparse(self) -> SparseIndex:
        from .sparse import SparseIndex

        def check(index: SparseIndex) -> None:
            if index.damaged:  # it dropped an unreadable file itself
                raise ValueError(index.damaged)

        return self._open_checked(SPARSE_FILE, SparseIndex, self.sparse_texts, check)

    def _open_checked(self, name: str, make: Callable[[Path], Any], fetch: Callable[[np.ndarray], Any],
                      check: Callable[[Any], None]) -> Any:
        """Load an index file, reconcile it with the docstore and save it if that changed it; a file
        that fails to load or to reconcile is deleted and the index rebuilt from the docstore."""
        path = self.path / name
        store_ids = self.docstore.chunk_ids()
        try:
            index = make(path)
            check(index)
            changed = index.reconcile(store_ids, fetch)
        except _NOT_DAMAGE:
            raise
        except Exception as exc:  # noqa: BLE001 - any damage of a cache is repaired from the truth
            logger.warning("%s is unreadable (%s): rebuilding it from the docstore", path,
                           str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__)
            path.unlink(missing_ok=True)
            index = make(path)
            changed = index.reconcile(store_ids, fetch)
        if any(changed) or (len(store_ids) and not path.exists()):
            index.save()
        return index

    @property
    def dense(self) -> DenseIndex:
        return self._dense.get()

    @property
    def sparse(self) -> SparseIndex:
        return self._sparse.get()

    def open(self) -> None:
        """Load both indexes now, repairing them from the docstore if a crash left them stale."""
        _ = self.dense, self.sparse

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Index new chunks (already committed to the docstore): vectors, and the text read back."""
        self.dense.add(ids, vectors)
        self.sparse.add(ids, self.sparse_texts(ids))

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.dense.remove(np.asarray(ids, dtype=np.int64))
            self.sparse.remove(ids)

    def save(self) -> None:
        """Save whichever index changed."""
        for index in (self._dense.peek(), self._sparse.peek()):
            if index is not None and index.dirty:
                index.save()

    def remove_stale_temps(self) -> int:
        """Delete the half-written index files a killed writer left beside the indexes (the caller holds
        the writer lock); each is as large as an index, so crashes would otherwise fill the disk."""
        removed = sum(remove_stale_temps(folder) for folder in {self.path, (self.path / SPARSE_FILE).parent})
        if removed:
            logger.info("%s: removed %d temp file(s) left by an interrupted write", self.path, removed)
        return removed

    def rebuild(self) -> dict[str, int]:
        """Delete the index files and build them again from the docstore (``kb repair``); an unreadable
        ``calibration.json`` is removed (the default calibration applies until ``kb calibrate``)."""
        for name in (DENSE_FILE, SPARSE_FILE):
            (self.path / name).unlink(missing_ok=True)
        if _calibration_state(self.path / CALIBRATION_FILE).startswith("unreadable"):
            logger.warning("%s is unreadable: removed (the default calibration applies; `kb calibrate` fits "
                           "a new one)", self.path / CALIBRATION_FILE)
            (self.path / CALIBRATION_FILE).unlink()
        self._dense.reset()
        self._sparse.reset()
        self.open()
        self.save()
        return {"dense": self.dense.ntotal, "sparse": len(self.sparse)}

    def verify(self) -> dict[str, Any]:
        """Compare the *saved* files with the docstore and check the docstore itself (without repairing):
        counts of ids only in an index or only in the docstore, duplicates, each file's state, ``ok``."""
        from .sparse import SparseIndex
        from .vector import DenseIndex

        store_ids = self.docstore.chunk_ids()
        files: dict[str, str] = {"docstore": self.docstore.check()}
        dense = sparse = np.zeros(0, dtype=np.int64)
        for key, name in (("dense_file", DENSE_FILE), ("sparse_file", SPARSE_FILE)):
            path = self.path / name
            if not path.exists():
                files[key] = "missing"
                continue
            try:
                if key == "dense_file":
                    dense = DenseIndex(path, self.dim, use_gpu=False).ids()
                else:
                    index = SparseIndex(path)
                    if index.path is None:
                        raise ValueError("not a BM25 index file")
                    sparse = index.ids
                files[key] = "ok"
            except _NOT_DAMAGE:
                raise
            except Exception as exc:  # noqa: BLE001 - reported, repaired on open or by rebuild()
                files[key] = f"unreadable ({type(exc).__name__})"
        files["calibration"] = _calibration_state(self.path / CALIBRATION_FILE)
        result: dict[str, Any] = {
            "chunks": int(len(store_ids)), "index_ids": int(len(dense)),
            "only_in_index": int(len(np.setdiff1d(dense, store_ids))),
            "only_in_docstore": int(len(np.setdiff1d(store_ids, dense))),
            "duplicate_index_ids": int(len(dense) - len(np.unique(dense))),
            "sparse_ids": int(len(sparse)),
            "only_in_sparse": int(len(np.setdiff1d(sparse, store_ids))),
            "only_in_docstore_sparse": int(len(np.setdiff1d(store_ids, sparse))),
            "duplicate_sparse_ids": int(len(sparse) - len(np.unique(sparse))),
            "duplicate_positions": self.docstore.counts()["duplicate_positions"], **files}
        result["ok"] = (files["docstore"] == "ok" and not files["calibration"].startswith("unreadable")
                        and not any(v for k, v in result.items() if k.startswith(("only_", "duplicate_")))
                        and all(files[k] == "ok" or (files[k] == "missing" and not len(store_ids))
                                for k in ("dense_file", "sparse_file")))
        return result


def _calibration_state(path: Path) -> str:
    """``"ok"``, ``"missing"`` (the default calibration applies) or ``"unreadable (...)"``."""
    if not path.exists():
        return "missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        weights = data["weights"]
        if not isinstance(data.get("embedder"), str) or len(weights) != 3:
            raise ValueError("not a calibration")
        [float(w) for w in weights]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return "ok"
