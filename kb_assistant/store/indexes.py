"""The derived indexes of a knowledge base, owned in one place.

Both the dense (FAISS) and the sparse (BM25) index follow one small protocol (:class:`DerivedIndex`):
``add`` / ``remove`` / ``search`` / ``save`` / ``reconcile``, keyed by the docstore's chunk row ids.
:class:`Indexes` opens them lazily from their files, reconciles them with the docstore (the truth) on
open, feeds both on every change and saves both; nothing else adds to or removes from an index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..lazy import Lazy

if TYPE_CHECKING:
    from .docstore import ChunkRow, DocStore
    from .sparse import SparseIndex
    from .vector import DenseIndex

logger = logging.getLogger(__name__)

DENSE_FILE = "dense.faiss"
SPARSE_FILE = "sparse/bm25.npz"


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

    def __init__(self, path: Path, docstore: DocStore, dim: int | Callable[[], int]) -> None:
        self.path = Path(path)
        self.docstore = docstore
        self._dim = dim
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

        index = DenseIndex(self.path / DENSE_FILE, self.dim)
        added, removed = index.reconcile(self.docstore.chunk_ids(),
                                         lambda ids: self.docstore.vectors(ids, self.dim))
        if added or removed:
            index.save()
        return index

    def _open_sparse(self) -> SparseIndex:
        from .sparse import SparseIndex

        index = SparseIndex(self.path / SPARSE_FILE)
        added, removed = index.reconcile(self.docstore.chunk_ids(), self.sparse_texts)
        if added or removed or not index.path.exists():
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

    def verify(self) -> dict[str, Any]:
        """Compare the *saved* index files with the docstore (without repairing)."""
        from .sparse import SparseIndex
        from .vector import DenseIndex

        store_ids = self.docstore.chunk_ids()
        dense = DenseIndex(self.path / DENSE_FILE, self.dim, use_gpu=False).ids()
        sparse = SparseIndex(self.path / SPARSE_FILE).ids
        return {"chunks": int(len(store_ids)), "index_ids": int(len(dense)),
                "only_in_index": int(len(np.setdiff1d(dense, store_ids))),
                "only_in_docstore": int(len(np.setdiff1d(store_ids, dense))),
                "duplicate_index_ids": int(len(dense) - len(np.unique(dense))),
                "sparse_ids": int(len(sparse)),
                "only_in_sparse": int(len(np.setdiff1d(sparse, store_ids))),
                "only_in_docstore_sparse": int(len(np.setdiff1d(store_ids, sparse))),
                "duplicate_sparse_ids": int(len(sparse) - len(np.unique(sparse)))}
