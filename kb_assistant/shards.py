"""Several knowledge-base directories searched as one: each shard in a thread, top k merged by score.

The first step of route A in docs/scaling.md: nothing in the storage changes, every shard is an ordinary
knowledge base (its own docstore, dense index, BM25 index, writer and ACL catalog). A query is embedded
once (every shard must use the same embedding model), each shard returns its top ``k`` readable by the
caller, and the union is cut to ``k`` by the calibrated :attr:`Hit.score`.

Not yet: global BM25 statistics (each shard scores with its own document frequencies and length, so
``bm25_norm`` is comparable only while the shards hold similar material, e.g. documents routed by the
hash of their path) and routing ingest to a shard (:meth:`shard_for` names the one a path belongs to;
ingest it there).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import KBError
from .knowledge_base import KnowledgeBase
from .types import Hit

logger = logging.getLogger(__name__)


class _OnceEmbedder:
    """The shards' shared embedder with the last few query vectors memoised: one embedding a query,
    however many shards ask for it (concurrent askers wait for the first)."""

    def __init__(self, inner: Any, size: int = 64) -> None:
        self._inner = inner
        self._size = size
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def _memo(self, kind: str, text: str, fn: Any) -> Any:
        with self._lock:  # held while embedding: the other shards' threads wait for this vector
            key = (kind, text)
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            value = fn(text)
            self._cache[key] = value
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
            return value

    def embed_query(self, text: str) -> np.ndarray:
        return self._memo("q", text, self._inner.embed_query)

    def embed_query_parts(self, text: str) -> list[np.ndarray]:
        return self._memo("parts", text, self._inner.embed_query_parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ShardedKnowledgeBase:
    """Search over several knowledge-base directories with merged top k (same :class:`Hit` type;
    ``hit.metadata["shard"]`` is the shard's position in ``paths``)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], config: dict[str, Any] | None = None, *,
                 threads: int | None = None) -> None:
        if not paths:
            raise KBError("ShardedKnowledgeBase needs at least one shard directory")
        self.shards = [KnowledgeBase(p, config, create=False) for p in paths]
        names = {kb.embedder.name for kb in self.shards}
        if len(names) > 1:
            self.close()
            raise KBError(f"shards use different embedding models ({', '.join(sorted(names))}); "
                          "their scores cannot be merged")
        shared = _OnceEmbedder(self.shards[0].embedder)
        for kb in self.shards:
            kb.retriever.embedder = shared
        self._pool = ThreadPoolExecutor(max_workers=threads or len(self.shards),
                                        thread_name_prefix="kb-shard")

    def shard_for(self, doc_id: str) -> int:
        """The shard a document belongs to (stable: a hash of its id, modulo the number of shards)."""
        return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") % len(self.shards)

    def search(self, query: str, k: int = 5, *, groups: Sequence[str] | None = None,
               filters: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` best chunks over all shards readable by ``groups`` and matching ``filters``."""
        if k <= 0:
            return []
        futures = [self._pool.submit(kb.search, query, k, groups=groups, filters=filters)
                   for kb in self.shards]
        merged: list[tuple[float, int, int, Hit]] = []
        for s, fut in enumerate(futures):
            for rank, hit in enumerate(fut.result()):
                hit.metadata["shard"] = s
                merged.append((-hit.score, s, rank, hit))
        merged.sort(key=lambda t: t[:3])
        return [t[3] for t in merged[:k]]

    def stats(self) -> dict[str, Any]:
        per = [kb.stats() for kb in self.shards]
        return {"shards": len(per), "chunks": sum(int(p.get("chunks", 0)) for p in per), "per_shard": per}

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
        for kb in self.shards:
            kb.close()

    def __enter__(self) -> ShardedKnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShardedKnowledgeBase({[str(kb.path) for kb in self.shards]!r})"
