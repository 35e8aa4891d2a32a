"""The ingest pipeline: walk -> hash -> load -> chunk (a parser thread) | embed -> store (main thread).

Files are parsed and chunked in a background thread while the main thread embeds, so the model is never
idle waiting for files. Each file commits atomically in the docstore; the dense index is saved at the
end and at checkpoints. Embeddings are re-used for any text already embedded (unchanged parts of a
changed file, repeated boilerplate across files), so only new text costs model time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .chunking import make_doc_id
from .errors import LoaderError
from .loaders import load_file, parser_version, walk
from .loaders.limits import ParseLimits
from .store.docstore import DocStore, DocumentRecord
from .types import Chunk, FailedItem, IngestReport

if TYPE_CHECKING:
    from .chunking import Chunker
    from .config import IngestConfig
    from .embedding import Embedder
    from .store.indexes import Indexes

logger = logging.getLogger(__name__)

_DONE = object()


def normalise_path(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class _Parsed:
    record: DocumentRecord
    chunks: list[Chunk]
    is_update: bool


class Ingestor:
    """One ingest run over a knowledge base's parts: its docstore, its indexes, the embedder, the chunker
    and the ``[ingest]`` config. The caller holds the writer lock."""

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
        cfg = config
        self.max_bytes = int(cfg.max_file_mb * 2**20)
        self.pdf_engine = cfg.pdf_engine
        self.limits = ParseLimits.from_config(cfg)
        self.show_progress = cfg.show_progress if show_progress is None else show_progress
        if self.show_progress is None:
            self.show_progress = logging.getLogger("kb_assistant").isEnabledFor(logging.INFO)

    # -- producer: walk, hash, parse, chunk -----------------------------------------------------------
    def _produce(self, entries: list, out: queue.Queue, report: IngestReport, seen: set[str]) -> None:
        chunker = self.chunker
        store = DocStore(self.docstore.path)  # own connection: sqlite connections are per thread
        try:
            for entry in entries:
                path = Path(entry.path)
                shown = str(path)
                if entry.error:
                    report.failed.append(FailedItem(shown, entry.error))
                    continue
                try:
                    norm = normalise_path(path)
                    seen.add(norm)
                    st = path.stat()
                    digest = file_hash(path)
                    doc_id = make_doc_id(norm)
                    old = store.get_document(doc_id)
                    fresh = old is not None and old.parser == parser_version(old.file_type,
                                                                             pdf_engine=self.pdf_engine)
                    if old is not None and old.content_hash == digest and old.status == "ok" and fresh:
                        if old.groups != self.groups or old.tags != self.tags:
                            store.update_labels(doc_id, self.groups, self.tags)
                        report.unchanged.append(shown)
                        continue
                    t0 = time.perf_counter()
                    docs = load_file(path, max_bytes=self.max_bytes, pdf_engine=self.pdf_engine,
                                     limits=self.limits)
                    chunks = chunker.chunk(docs, doc_id)
                    self.limits.check_chunks(len(chunks))
                    self.t_parse += time.perf_counter() - t0
                    if not chunks:
                        raise LoaderError("no text to index after chunking")
                    ftype = docs[0].metadata.get("file_type") if docs else None
                    record = DocumentRecord(doc_id, norm, digest, st.st_mtime, st.st_size, ftype,
                                            groups=list(self.groups), tags=list(self.tags),
                                            parser=parser_version(ftype, pdf_engine=self.pdf_engine))
                    out.put(_Parsed(record, chunks, old is not None))
                except LoaderError as exc:
                    report.failed.append(FailedItem(shown, str(exc)))
                except FileNotFoundError:
                    report.failed.append(FailedItem(shown, "file disappeared during ingest"))
                except PermissionError:
                    report.failed.append(FailedItem(shown, "permission denied: cannot read file"))
                except OSError as exc:
                    report.failed.append(FailedItem(shown, f"cannot read file: {exc.strerror or exc}"))
                except Exception as exc:  # a loader bug must not kill the batch
                    logger.exception("unexpected error on %s", shown)
                    report.failed.append(FailedItem(shown, f"unexpected error: {type(exc).__name__}: {exc}"))
        finally:
            store.close()
            out.put(_DONE)

    # -- consumer: embed and store --------------------------------------------------------------------
    def _flush(self, batch: list[_Parsed], report: IngestReport) -> None:
        if not batch:
            return
        texts = [c.embed_text for p in batch for c in p.chunks]
        hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts]
        known = self.docstore.find_vectors(hashes)
        todo: dict[str, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in known and h not in todo:
                todo[h] = t
        if todo:
            t0 = time.perf_counter()
            vecs = self.embedder.embed_documents(list(todo.values()), show_progress=self.show_progress)
            known.update(zip(todo.keys(), vecs, strict=True))
            self.t_embed += time.perf_counter() - t0
        self.embedded += len(todo)
        self.reused += len(texts) - len(todo)
        t0 = time.perf_counter()
        pos = 0
        for parsed in batch:
            n = len(parsed.chunks)
            doc_hashes = hashes[pos:pos + n]
            vectors = (np.stack([known[h] for h in doc_hashes]) if n
                       else np.zeros((0, self.indexes.dim), np.float32))
            removed, added = self.docstore.replace_document(parsed.record, parsed.chunks, vectors, doc_hashes)
            self.indexes.remove(removed)
            self.indexes.add(np.asarray(added, dtype=np.int64), vectors)
            (report.updated if parsed.is_update else report.added).append(parsed.record.path)
            report.chunks_added += n
            report.chunks_removed += len(removed)
            pos += n
        self.t_store += time.perf_counter() - t0
        if time.monotonic() - self._last_save > self.config.checkpoint_seconds:
            self.indexes.save()
            self._last_save = time.monotonic()

    def run(self, paths: Iterable[str | os.PathLike[str]], *, include: Sequence[str] | None = None,
            exclude: Sequence[str] | None = None, prune: bool = False) -> IngestReport:
        start = time.perf_counter()
        report = IngestReport()
        paths = [Path(p) for p in paths]
        cfg = self.config
        include = list(include) if include is not None else list(cfg.include) or None
        exclude = list(exclude) if exclude is not None else list(cfg.exclude) or None
        # open (and reconcile) the derived indexes before any docstore commit of this run
        self.indexes.open()
        entries = list(walk(paths, include=include, exclude=exclude, max_bytes=self.max_bytes))
        self.embedded = self.reused = 0
        self.t_parse = self.t_embed = self.t_store = 0.0
        self._last_save = time.monotonic()
        seen: set[str] = set()
        q: queue.Queue = queue.Queue(maxsize=64 if cfg.overlap else 0)
        producer = threading.Thread(target=self._produce, args=(entries, q, report, seen), daemon=True,
                                    name="kb-parse")
        producer.start()
        if not cfg.overlap:
            producer.join()
        from tqdm.auto import tqdm

        bar = tqdm(total=len(entries), desc="ingest", unit="file", disable=not self.show_progress)
        batch: list[_Parsed] = []
        n_batch = 0
        while True:
            try:
                item = q.get(timeout=0.05 if batch else None)
            except queue.Empty:  # parser is slower than us: embed what we have
                self._flush(batch, report)
                batch, n_batch = [], 0
                continue
            if item is _DONE:
                break
            batch.append(item)
            n_batch += len(item.chunks)
            bar.update(1)
            if n_batch >= cfg.embed_batch_chunks:
                self._flush(batch, report)
                batch, n_batch = [], 0
        self._flush(batch, report)
        producer.join()
        bar.n = len(entries)
        bar.close()
        if prune:
            self._prune(paths, seen, report)
        self.indexes.save()
        report.seconds = time.perf_counter() - start
        report.timings = {"parse_s": self.t_parse, "embed_s": self.t_embed, "store_s": self.t_store,
                          "chunks_embedded": float(self.embedded), "chunks_reused": float(self.reused)}
        logger.info("ingest: %s (%d chunks embedded, %d re-used)", report.summary(), self.embedded,
                    self.reused)
        return report

    def _prune(self, roots: list[Path], seen: set[str], report: IngestReport) -> None:
        norm_roots = [normalise_path(r) for r in roots]
        for doc in self.docstore.documents():
            if doc.path in seen:
                continue
            inside = any(doc.path == r or doc.path.startswith(r.rstrip(os.sep) + os.sep) for r in norm_roots)
            if inside and not os.path.exists(doc.path):
                removed = self.docstore.delete_document(doc.doc_id)
                self.indexes.remove(removed)
                report.chunks_removed += len(removed)
                report.removed.append(doc.path)
