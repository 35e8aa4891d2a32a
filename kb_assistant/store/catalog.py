"""Access control and metadata filters over the docstore: which chunk row ids a caller may see.

Documents ingested with ``groups=[...]`` are readable only by callers holding one of those groups;
documents without groups are public. ``groups=None`` means a trusted local caller (no restriction);
``groups=[]`` means public documents only.

:class:`Catalog` holds, per docstore version, the chunk ids with their document index and language as
arrays, so a (groups, filters) pair becomes the allowed id array with one vectorised mask (cached
per version); retrieval passes it to both indexes *before* the cut to k.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from .docstore import ChunkRow, DocStore, DocumentRecord

FILTER_KEYS = ("source", "file_type", "tags", "mtime_after", "mtime_before", "lang", "doc_id")


def readable(row_groups: Sequence[str], groups: Sequence[str] | None) -> bool:
    """Public documents (no groups) are readable by all; others need one shared group."""
    if groups is None or not row_groups:
        return True
    return bool(set(row_groups) & set(groups))


def check_groups(groups: Any, what: str = "groups") -> None:
    """ACL groups are a list of names: a bare string would be read as its letters (``"hr"`` as
    ``{"h", "r"}``), which neither HR nor anyone else intends."""
    if groups is None:
        return
    if isinstance(groups, (str, bytes)) or not all(isinstance(g, str) for g in groups):
        raise ConfigError(f"{what} must be a list of names, e.g. [\"hr\"]; got {groups!r:.80}")


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
    """Known keys, and values of the right type: a time for ``mtime_*``, else a string or list of strings."""
    if filters is not None and not isinstance(filters, dict):
        raise ConfigError(f"search filters must be a mapping of filter -> value; got "
                          f"{type(filters).__name__}")
    unknown = set(filters or {}) - set(FILTER_KEYS)
    if unknown:
        raise ConfigError(f"unknown search filter(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"allowed: {', '.join(FILTER_KEYS)}")
    for key, value in (filters or {}).items():
        if key.startswith("mtime_"):  # the text of a time is parsed (and refused) where it is used
            if isinstance(value, (list, dict, bool)) or value is None:
                raise ConfigError(f"search filter {key!r} must be epoch seconds or ISO 8601; got "
                                  f"{str(value)[:40]!r}")
        elif not all(isinstance(v, str) for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"search filter {key!r} must be a string or a list of strings; got "
                              f"{str(value)[:40]!r}")


def _source_ok(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, f"*{p}") for p in patterns)


def doc_matches(doc: DocumentRecord, filters: dict[str, Any] | None) -> bool:
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


def matches_filters(row: ChunkRow, filters: dict[str, Any] | None, doc: DocumentRecord | None = None) -> bool:
    """Chunk-level check (lang on the chunk; the rest on its document when given)."""
    f = filters or {}
    if "lang" in f and row.metadata.get("lang") not in _as_list(f["lang"]):
        return False
    return doc is None or doc_matches(doc, f)


class _Snapshot:
    """The arrays of one docstore version."""

    def __init__(self, store: DocStore) -> None:
        self.version = store.version
        self.docs = store.documents()
        self.by_id = {d.doc_id: d for d in self.docs}
        index = {d.doc_id: i for i, d in enumerate(self.docs)}
        ids, doc_ids, langs = store.catalog_rows()
        self.ids = ids
        self.doc_idx = np.fromiter((index.get(d, -1) for d in doc_ids), dtype=np.int64, count=len(doc_ids))
        self.lang = np.array([lang or "en" for lang in langs], dtype=object)
        self.allowed: dict[str, np.ndarray] = {}  # (groups, filters) -> ids, for this version


class Catalog:
    """Allowed chunk ids per (groups, filters), recomputed when the docstore version changes."""

    def __init__(self, store: DocStore) -> None:
        self.store = store
        self._snap: _Snapshot | None = None
        self._lock = threading.Lock()

    def _snapshot(self) -> _Snapshot:
        version = self.store.version
        with self._lock:
            if self._snap is None or self._snap.version != version:
                self._snap = _Snapshot(self.store)
            return self._snap

    def document(self, doc_id: str) -> DocumentRecord | None:
        """The document record of this version (for filter re-checks of fresh rows)."""
        return self._snapshot().by_id.get(doc_id)

    def allowed_ids(self, groups: Sequence[str] | None, filters: dict[str, Any] | None) -> np.ndarray | None:
        """Row ids the caller may see and that match the filters; None = no restriction."""
        check_groups(groups)
        check_filters(filters)
        if groups is None and not filters:
            return None
        snap = self._snapshot()
        key = json.dumps([sorted(groups) if groups is not None else None, filters], sort_keys=True,
                         default=str)
        hit = snap.allowed.get(key)
        if hit is None:
            if len(snap.allowed) >= 64:
                snap.allowed.clear()
            hit = snap.allowed[key] = self._compute(snap, groups, filters)
        return hit

    @staticmethod
    def _compute(snap: _Snapshot, groups: Sequence[str] | None, filters: dict[str, Any] | None) -> np.ndarray:
        doc_ok = np.array([readable(d.groups, groups) and doc_matches(d, filters) for d in snap.docs]
                          + [False], dtype=bool)  # index -1 (orphan chunk) -> False
        mask = doc_ok[snap.doc_idx]
        if filters and "lang" in filters:
            mask &= np.isin(snap.lang, _as_list(filters["lang"]))
        return snap.ids[mask]
