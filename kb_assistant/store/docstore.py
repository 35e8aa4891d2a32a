"""SQLite docstore: documents, chunks (text, metadata, vector) and a change counter.

SQLite is the source of truth. Each file's change (its document row, chunks and vectors) commits in one
transaction, so a crash leaves every file either fully old or fully new. The FAISS and BM25 indexes are
derived from this store and reconciled with it when they are opened.

Because nothing can rebuild it, opening checks it: :func:`check_kb_dir` refuses a directory whose
manifest says documents were ingested but whose docstore is gone, and a damaged file fails with a
one-line :class:`~kb_assistant.errors.KBError` instead of a raw ``sqlite3.DatabaseError``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KBError
from .manifest import MANIFEST

SCHEMA_VERSION = 1
DOCSTORE_FILE = "docstore.sqlite3"
#: SQLite's "the file is damaged" (SQLITE_CORRUPT) and "not a database" (SQLITE_NOTADB)
DAMAGED_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    mtime REAL NOT NULL,
    size INTEGER NOT NULL,
    file_type TEXT,
    status TEXT NOT NULL DEFAULT 'ok',
    n_chunks INTEGER NOT NULL DEFAULT 0,
    groups TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    ingested_at REAL NOT NULL,
    parser TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    embed_hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, position);
CREATE INDEX IF NOT EXISTS chunks_embed_hash ON chunks(embed_hash);
"""


@dataclass
class DocumentRecord:
    doc_id: str
    path: str
    content_hash: str
    mtime: float
    size: int
    file_type: str | None = None
    status: str = "ok"
    n_chunks: int = 0
    groups: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    ingested_at: float = 0.0
    #: loaders.parser_version() of the loader that produced the chunks (None: made before it was stored)
    parser: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ChunkRow:
    id: int
    chunk_id: str
    doc_id: str
    position: int
    text: str
    metadata: dict[str, Any]
    path: str
    groups: list[str]


def check_kb_dir(path: Path, create: bool = True) -> None:
    """Refuse, with one line, what cannot be opened as a knowledge base: a file; a directory whose
    manifest says documents were ingested but whose docstore is missing or empty (the indexes cannot be
    rebuilt without it); and, with ``create`` False, anything that is not a knowledge base yet."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise KBError(f"{path} is a file, not a knowledge base directory")
    store = path / DOCSTORE_FILE
    missing = not store.exists() or store.stat().st_size == 0
    if missing and (path / MANIFEST).exists():
        raise KBError(f"{path}: {DOCSTORE_FILE} is missing or empty although documents were ingested; "
                      "restore it from a backup, or re-ingest into a new directory")
    if missing and not create:
        what = "does not exist" if not path.exists() else "is not a knowledge base (no docstore.sqlite3)"
        raise KBError(f"{path} {what}: create it with `kb init` or `kb ingest FILES --kb DIR`")


def damaged(path: Path, why: object) -> KBError:
    """The one-line error of a damaged docstore (``why``: SQLite's error or integrity-check message)."""
    return KBError(f"{path}: the docstore is damaged ({why}); restore it from a backup, or re-ingest into "
                   "a new directory (`kb verify` checks it)")


def is_damage(exc: BaseException) -> bool:
    """Whether a sqlite3 error says the file is damaged (not: locked, read-only, a constraint)."""
    return isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorname", "") in DAMAGED_CODES


class DocStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None,
                                    check_same_thread=False)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            if is_damage(exc):
                raise damaged(self.path, exc) from None
            raise

    def _open(self) -> None:
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(_SCHEMA)
        if "parser" not in {r[1] for r in self.conn.execute("PRAGMA table_info(documents)")}:
            self.conn.execute("ALTER TABLE documents ADD COLUMN parser TEXT")  # docstores made before it
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
            self.set_meta("version", "0")

    def check(self) -> str:
        """SQLite's integrity check of the whole file: ``"ok"`` or its first complaint (reads every page)."""
        try:
            row = self.conn.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                return str(exc)
            raise
        return str(row[0]) if row else "no answer"

    # -- meta ---------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def version(self) -> int:
        return int(self.get_meta("version") or 0)

    def close(self) -> None:
        self.conn.close()

    # -- documents ----------------------------------------------------------------------------------
    def _doc(self, row: sqlite3.Row | tuple[Any, ...]) -> DocumentRecord:
        (doc_id, path, chash, mtime, size, ftype, status, n, groups, tags, at, parser) = row
        return DocumentRecord(doc_id, path, chash, mtime, size, ftype, status, n, json.loads(groups),
                              json.loads(tags), at, parser)

    _DOC_COLS = ("doc_id, path, content_hash, mtime, size, file_type, status, n_chunks, groups, tags, "
                 "ingested_at, parser")

    def get_document(self, doc_id: str) -> DocumentRecord | None:
        row = self.conn.execute(f"SELECT {self._DOC_COLS} FROM documents WHERE doc_id=?",
                                (doc_id,)).fetchone()
        return self._doc(row) if row else None

    def documents(self) -> list[DocumentRecord]:
        rows = self.conn.execute(f"SELECT {self._DOC_COLS} FROM documents ORDER BY path").fetchall()
        return [self._doc(r) for r in rows]

    def find_vectors(self, embed_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these embedded texts (re-used instead of re-embedding)."""
        found: dict[str, np.ndarray] = {}
        hashes = list(set(embed_hashes))
        for start in range(0, len(hashes), 500):
            part = hashes[start:start + 500]
            marks = ",".join("?" * len(part))
            for h, blob in self.conn.execute(
                    f"SELECT embed_hash, vector FROM chunks WHERE embed_hash IN ({marks})", part):
                found.setdefault(h, np.frombuffer(blob, dtype=np.float32))
        return found

    def replace_document(self, record: DocumentRecord, chunks: Sequence[Any], vectors: np.ndarray,
                         embed_hashes: Sequence[str]) -> tuple[list[int], list[int]]:
        """Atomically replace a document and its chunks. Returns (removed row ids, added row ids)."""
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            removed = [r[0] for r in cur.execute("SELECT id FROM chunks WHERE doc_id=?", (record.doc_id,))]
            cur.execute("DELETE FROM chunks WHERE doc_id=?", (record.doc_id,))
            cur.execute("DELETE FROM documents WHERE doc_id=? OR path=?", (record.doc_id, record.path))
            record.n_chunks = len(chunks)
            record.ingested_at = time.time()
            cur.execute(
                f"INSERT INTO documents({self._DOC_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.doc_id, record.path, record.content_hash, record.mtime, record.size,
                 record.file_type, record.status, record.n_chunks, json.dumps(record.groups),
                 json.dumps(record.tags), record.ingested_at, record.parser))
            added: list[int] = []
            for chunk, vec, ehash in zip(chunks, vectors, embed_hashes, strict=True):
                cur.execute(
                    "INSERT INTO chunks(chunk_id, doc_id, position, text, metadata, n_tokens, embed_hash,"
                    " vector) VALUES (?,?,?,?,?,?,?,?)",
                    (chunk.chunk_id, chunk.doc_id, chunk.position, chunk.text,
                     json.dumps(chunk.metadata, ensure_ascii=False), chunk.n_tokens, ehash,
                     np.asarray(vec, dtype=np.float32).tobytes()))
                added.append(int(cur.lastrowid))
            self._bump(cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return removed, added

    def delete_document(self, doc_id: str) -> list[int]:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            removed = [r[0] for r in cur.execute("SELECT id FROM chunks WHERE doc_id=?", (doc_id,))]
            cur.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
            cur.execute("DELETE FROM documents WHERE doc_id=?", (doc_id,))
            self._bump(cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return removed

    def update_labels(self, doc_id: str, groups: list[str], tags: list[str]) -> None:
        """Change a document's access groups and tags without touching its chunks."""
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("UPDATE documents SET groups=?, tags=? WHERE doc_id=?",
                        (json.dumps(groups), json.dumps(tags), doc_id))
            self._bump(cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def _bump(self, cur: sqlite3.Cursor) -> None:
        cur.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")

    # -- chunks -------------------------------------------------------------------------------------
    def chunk_ids(self) -> np.ndarray:
        rows = self.conn.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def catalog_rows(self) -> tuple[np.ndarray, list[str], list[str | None]]:
        """(row ids, their doc ids, their chunk ``lang``) of every chunk, by row id: what access control
        and filters need (see :class:`kb_assistant.store.catalog.Catalog`)."""
        rows = self.conn.execute(
            "SELECT id, doc_id, json_extract(metadata, '$.lang') FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, [r[1] for r in rows], [r[2] for r in rows]

    def vectors(self, ids: Sequence[int], dim: int) -> np.ndarray:
        out = np.empty((len(ids), dim), dtype=np.float32)
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start:start + 500]]
            marks = ",".join("?" * len(part))
            got = dict(self.conn.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", part))
            for j, i in enumerate(part):
                out[start + j] = np.frombuffer(got[i], dtype=np.float32)
        return out

    def iter_texts(self, batch: int = 2000) -> Iterator[list[tuple[int, str]]]:
        last = -1
        while True:
            rows = self.conn.execute("SELECT id, text FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                                     (last, batch)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def get_chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        out: dict[int, ChunkRow] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                    "SELECT c.id, c.chunk_id, c.doc_id, c.position, c.text, c.metadata, d.path, d.groups "
                    f"FROM chunks c JOIN documents d USING(doc_id) WHERE c.id IN ({marks})", part):
                out[row[0]] = ChunkRow(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]),
                                       row[6], json.loads(row[7]))
        return out

    def neighbours(self, doc_id: str, position: int, radius: int) -> list[ChunkRow]:
        rows = self.conn.execute(
            "SELECT id FROM chunks WHERE doc_id=? AND position BETWEEN ? AND ? ORDER BY position",
            (doc_id, position - radius, position + radius)).fetchall()
        got = self.get_chunks([r[0] for r in rows])
        return [got[r[0]] for r in rows]

    def counts(self) -> dict[str, int]:
        docs = self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        dup = self.conn.execute(
            "SELECT COUNT(*) FROM (SELECT doc_id, position FROM chunks GROUP BY doc_id, position "
            "HAVING COUNT(*) > 1)").fetchone()[0]
        return {"documents": docs, "chunks": chunks, "duplicate_positions": dup}

