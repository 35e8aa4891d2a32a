"""The ingest pipeline's per-file steps, shared by every engine, and the local engine.

    walk (streamed) -> check_file (content hash vs the docstore) -> load_and_chunk -> Writer.commit
    (embed what no stored vector covers, one docstore transaction per file, then the derived indexes)

The local engine (:class:`Ingestor`) parses in a background thread while the main thread embeds and
commits, so the model is never idle waiting for files; the Ray engine (:mod:`kb_assistant.ingest_ray`)
parses and embeds on a cluster and commits through the same :class:`Writer`. Embeddings are re-used for
any text already stored (unchanged parts of a changed file, boilerplate repeated across files).

Memory does not grow with the corpus's bytes: the walk is streamed, the parse queue is bounded in files
and bytes (``[ingest] queue_mb``), embedding goes in batches of ``embed_batch_chunks``. What grows is
small, per file (report lists, walker's seen set, paths for ``prune``), and the derived indexes.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .chunking import make_doc_id
from .errors import KBError, LoaderError
from .loaders import load_file, parser_version, walk
from .loaders.limits import DEFAULT_LIMITS, ParseLimits
from .storage_utils import embed_hash, file_hash
from .store.docstore import DocStore, DocumentRecord
from .types import Chunk, FailedItem, IngestReport

if TYPE_CHECKING:
    from .chunking import Chunker
    from .config import IngestConfig
    from .embedding import Embedder
    from .loaders.walker import WalkEntry
    from .store.indexes import Indexes

logger = logging.getLogger(__name__)

_DONE = object()
_QUEUE_FILES = 64


def normalise_path(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class Scope:
    """What every file of one run shares: its labels and the loaders' settings."""

    groups: list[str]
    tags: list[str]
    max_bytes: int
    pdf_engine: str = "auto"
    limits: ParseLimits = DEFAULT_LIMITS


@dataclass
class Pending:
    """A new or changed file (its content hash is not the docstore's): to load, chunk, embed, commit."""

    shown: str  # the path as walked (what the report shows)
    source: str  # absolute path the loader reads (valid in another process, symlink names kept)
    path: str  # normalised path (the document's identity)
    doc_id: str
    content_hash: str
    mtime: float
    size: int
    is_update: bool


@dataclass
class Parsed:
    """A loaded and chunked file, ready to embed and commit."""

    record: DocumentRecord
    chunks: list[Chunk]
    is_update: bool
    parse_s: float = 0.0

    @property
    def weight(self) -> int:
        """Bytes of text it holds (what bounds the parse queue)."""
        return sum(len(c.text) + len(c.embed_text) for c in self.chunks) + 1


def failure_reason(exc: BaseException, shown: str) -> str:
    """The one-line reason a file failed, for the report."""
    if isinstance(exc, LoaderError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "file disappeared during ingest"
    if isinstance(exc, PermissionError):
        return "permission denied: cannot read file"
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    logger.error("unexpected error on %s", shown, exc_info=exc)  # a loader bug must not kill the batch
    return f"unexpected error: {type(exc).__name__}: {exc}"


def check_file(store: DocStore, entry: WalkEntry, scope: Scope, report: IngestReport,
               seen: set[str] | None) -> Pending | None:
    """The content-hash check against the docstore. None when the file failed (its reason goes in the
    report) or is unchanged, by content and by parser version (its labels updated if they differ); else
    the file to parse. ``seen`` collects the normalised paths walked (for ``prune``; None: not kept)."""
    path = Path(entry.path)
    shown = str(path)
    if entry.error:
        report.failed.append(FailedItem(shown, entry.error))
        return None
    try:
        norm = normalise_path(path)
        if seen is not None:
            seen.add(norm)
        st = path.stat()
        digest = file_hash(path)
        doc_id = make_doc_id(norm)
        old = store.get_document(doc_id)
        fresh = old is not None and old.parser == parser_version(old.file_type, pdf_engine=scope.pdf_engine)
        if old is not None and old.content_hash == digest and old.status == "ok" and fresh:
            if old.groups != scope.groups or old.tags != scope.tags:
                store.update_labels(doc_id, scope.groups, scope.tags)
            report.unchanged.append(shown)
            return None
        return Pending(shown, os.path.abspath(path), norm, doc_id, digest, st.st_mtime, st.st_size,
                       old is not None)
    except Exception as exc:
        report.failed.append(FailedItem(shown, failure_reason(exc, shown)))
        return None


def load_and_chunk(pending: Pending, chunker: Chunker, scope: Scope) -> Parsed:
    """Load one file and cut it into chunks; raises with the reason when it yields nothing to index."""
    t0 = time.perf_counter()
    docs = load_file(Path(pending.source), max_bytes=scope.max_bytes, pdf_engine=scope.pdf_engine,
                     limits=scope.limits)
    chunks = chunker.chunk(docs, pending.doc_id)
    scope.limits.check_chunks(len(chunks))
    if not chunks:
        raise LoaderError("no text to index after chunking")
    ftype = docs[0].metadata.get("file_type") if docs else None
    record = DocumentRecord(pending.doc_id, pending.path, pending.content_hash, pending.mtime, pending.size,
                            ftype, groups=list(scope.groups), tags=list(scope.tags),
                            parser=parser_version(ftype, pdf_engine=scope.pdf_engine))
    return Parsed(record, chunks, pending.is_update, time.perf_counter() - t0)


def parse_file(pending: Pending, chunker: Chunker, scope: Scope) -> Parsed | FailedItem:
    """:func:`load_and_chunk`, or the file's one-line failure: never raises for one bad file."""
    try:
        return load_and_chunk(pending, chunker, scope)
    except Exception as exc:
        return FailedItem(pending.shown, failure_reason(exc, pending.shown))


class Writer:
    """The single writer of an ingest run: embeds what no stored vector covers, commits each file in one
    docstore transaction, feeds the derived indexes, checkpoints them and fills the report."""

    def __init__(self, docstore: DocStore, indexes: Indexes, embedder: Embedder, config: IngestConfig,
                 report: IngestReport, show_progress: bool) -> None:
        self.docstore = docstore
        self.indexes = indexes
        self.embedder = embedder
        self.config = config
        self.report = report
        self.show_progress = show_progress
        self.embedded = self.reused = 0
        self.t_parse = self.t_embed = self.t_store = 0.0
        self._last_save = time.monotonic()

    def commit(self, batch: Sequence[Parsed], vectors: Mapping[str, np.ndarray] | None = None) -> None:
        """Embed and commit ``batch``. ``vectors`` (by :func:`embed_hash`) are those a remote embedder
        computed; a vector already stored always wins, so equal texts keep one vector whichever engine
        ran."""
        if not batch:
            return
        hashes = [embed_hash(c.embed_text) for p in batch for c in p.chunks]
        known = self.docstore.find_vectors(hashes)
        todo: dict[str, str] = {}
        for h, c in zip(hashes, (c for p in batch for c in p.chunks), strict=True):
            if h not in known and h not in todo:
                todo[h] = c.embed_text
        if todo and vectors is not None:
            missing = [h for h in todo if h not in vectors]
            if missing:
                raise KBError(f"ingest: {len(missing)} chunk vectors missing from the embedder's output")
            known.update((h, vectors[h]) for h in todo)
        elif todo:
            t0 = time.perf_counter()
            vecs = self.embedder.embed_documents(list(todo.values()), show_progress=self.show_progress)
            known.update(zip(todo.keys(), vecs, strict=True))
            self.t_embed += time.perf_counter() - t0
        self.embedded += len(todo)
        self.reused += len(hashes) - len(todo)
        t0 = time.perf_counter()
        pos = 0
        for parsed in batch:
            n = len(parsed.chunks)
            doc_hashes = hashes[pos:pos + n]
            vecs = (np.stack([known[h] for h in doc_hashes]) if n
                    else np.zeros((0, self.indexes.dim), np.float32))
            removed, added = self.docstore.replace_document(parsed.record, parsed.chunks, vecs, doc_hashes)
            self.indexes.remove(removed)
            self.indexes.add(np.asarray(added, dtype=np.int64), vecs)
            (self.report.updated if parsed.is_update else self.report.added).append(parsed.record.path)
            self.report.chunks_added += n
            self.report.chunks_removed += len(removed)
            self.t_parse += parsed.parse_s
            pos += n
        self.t_store += time.perf_counter() - t0
        if time.monotonic() - self._last_save > self.config.checkpoint_seconds:
            self.indexes.save()
            self._last_save = time.monotonic()

    def prune(self, roots: Sequence[Path], seen: set[str]) -> None:
        """Remove documents under ``roots`` whose files are gone."""
        norm_roots = [normalise_path(r) for r in roots]
        for doc in self.docstore.documents():
            if doc.path in seen:
                continue
            inside = any(doc.path == r or doc.path.startswith(r.rstrip(os.sep) + os.sep) for r in norm_roots)
            if inside and not os.path.exists(doc.path):
                removed = self.docstore.delete_document(doc.doc_id)
                self.indexes.remove(removed)
                self.report.chunks_removed += len(removed)
                self.report.removed.append(doc.path)

    def finish(self, start: float, **timings: float) -> IngestReport:
        """Save the indexes and complete the report (``timings``: engine-specific extra figures)."""
        self.indexes.save()
        report = self.report
        report.seconds = time.perf_counter() - start
        report.timings = {"parse_s": self.t_parse, "embed_s": self.t_embed, "store_s": self.t_store,
                          "chunks_embedded": float(self.embedded), "chunks_reused": float(self.reused),
                          **timings}
        logger.info("ingest: %s (%d chunks embedded, %d re-used)", report.summary(), self.embedded,
                    self.reused)
        return report


class _Budget:
    """Bytes of parsed text between the parser and the writer: the parser waits while more than ``limit``
    are held (a single larger file still passes, alone)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.closed = limit, 0, False
        self._cv = threading.Condition()

    def acquire(self, n: int) -> bool:
        with self._cv:
            while self.used > 0 and self.used + n > self.limit and not self.closed:
                self._cv.wait()
            self.used += n
            return not self.closed

    def release(self, n: int) -> None:
        with self._cv:
            self.used -= n
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


class Ingestor:
    """One local ingest run over a knowledge base's parts: its docstore, its indexes, the embedder, the
    chunker and the ``[ingest]`` config. The caller holds the writer lock."""

    def __init__(self, docstore: DocStore, indexes: Indexes, embedder: Embedder, chunker: Chunker,
                 config: IngestConfig, *, groups: Sequence[str] | None = None,
                 tags: Sequence[str] | None = None, show_progress: bool | None = None) -> None:
        self.docstore = docstore
        self.indexes = indexes
        self.embedder = embedder
        self.chunker = chunker
        self.config = config
        self.groups = sorted(set(groups or []))
        self.tags = sorted(set(tags or []))
        self.max_bytes = int(config.max_file_mb * 2**20)
        self.scope = Scope(self.groups, self.tags, self.max_bytes, config.pdf_engine,
                           ParseLimits.from_config(config))
        self.show_progress = config.show_progress if show_progress is None else show_progress
        if self.show_progress is None:
            self.show_progress = logging.getLogger("kb_assistant").isEnabledFor(logging.INFO)

    def _walk(self, roots: list[Path], include: Sequence[str] | None,
              exclude: Sequence[str] | None) -> Iterator[WalkEntry]:
        cfg = self.config
        inc = list(include) if include is not None else list(cfg.include) or None
        exc = list(exclude) if exclude is not None else list(cfg.exclude) or None
        return walk(roots, include=inc, exclude=exc, max_bytes=self.max_bytes)

    def _writer(self, report: IngestReport) -> Writer:
        # open (and reconcile) the derived indexes before any docstore commit of this run
        self.indexes.open()
        return Writer(self.docstore, self.indexes, self.embedder, self.config, report,
                      bool(self.show_progress))

    # -- producer: walk, hash, parse, chunk -----------------------------------------------------------
    def _produce(self, entries: Iterator[WalkEntry], out: queue.Queue, report: IngestReport,
                 seen: set[str] | None, budget: _Budget | None, stop: threading.Event) -> None:
        store = DocStore(self.docstore.path)  # own connection: sqlite connections are per thread
        try:
            for entry in entries:
                if stop.is_set():
                    return
                pending = check_file(store, entry, self.scope, report, seen)
                if pending is None:
                    continue
                item = parse_file(pending, self.chunker, self.scope)
                if isinstance(item, FailedItem):
                    report.failed.append(item)
                    continue
                if budget is not None and not budget.acquire(item.weight):
                    return
                out.put(item)
        finally:
            store.close()
            out.put(_DONE)

    def run(self, paths: Iterable[str | os.PathLike[str]], *, include: Sequence[str] | None = None,
            exclude: Sequence[str] | None = None, prune: bool = False) -> IngestReport:
        start = time.perf_counter()
        report = IngestReport()
        roots = [Path(p) for p in paths]
        cfg = self.config
        writer = self._writer(report)
        seen: set[str] | None = set() if prune else None
        # overlap=false parses everything first: an unbounded queue, by the setting's own definition
        budget = _Budget(int(cfg.queue_mb * 2**20)) if cfg.overlap else None
        q: queue.Queue = queue.Queue(maxsize=_QUEUE_FILES if cfg.overlap else 0)
        stop = threading.Event()
        producer = threading.Thread(target=self._produce, daemon=True, name="kb-parse",
                                    args=(self._walk(roots, include, exclude), q, report, seen, budget, stop))
        producer.start()
        if not cfg.overlap:
            producer.join()
        from tqdm.auto import tqdm

        bar = tqdm(desc="ingest", unit="file", disable=not self.show_progress)
        batch: list[Parsed] = []
        n_batch = 0

        def flush() -> None:
            nonlocal batch, n_batch
            writer.commit(batch)
            if budget is not None:
                budget.release(sum(p.weight for p in batch))
            batch, n_batch = [], 0

        try:
            while True:
                try:
                    item = q.get(timeout=0.05 if batch else None)
                except queue.Empty:  # parser is slower than us: embed what we have
                    flush()
                    continue
                if item is _DONE:
                    break
                batch.append(item)
                n_batch += len(item.chunks)
                bar.update(1)
                if n_batch >= cfg.embed_batch_chunks:
                    flush()
            flush()
        finally:
            stop.set()
            if budget is not None:
                budget.close()
            while producer.is_alive():  # unblock a parser waiting on a full queue
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            bar.close()
        if seen is not None:
            writer.prune(roots, seen)
        return writer.finish(start)
