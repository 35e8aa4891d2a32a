"""The public facade: ``KnowledgeBase`` builds the stages from a directory and hands each its parts.

    kb = KnowledgeBase("path/to/kb")          # opens or creates; cheap, models load on first use
    kb = KnowledgeBase("path/to/kb", create=False)   # opens an existing one only (what the CLI uses)
    report = kb.ingest(["docs/"])             # IngestReport (added/updated/unchanged/removed/failed)
    hits = kb.search("how do I set up the VPN?", k=5)
    answer = kb.ask("how do I set up the VPN?")

A knowledge base is a directory: ``manifest.json`` (format, library version, embedding model),
``config.toml`` (its settings), ``docstore.sqlite3`` (the truth: documents, chunks, vectors), and the
derived indexes ``dense.faiss`` and ``sparse/``, which are reconciled with the docstore on open.

Access control: documents ingested with ``groups=[...]`` are readable only by callers holding one of
those groups; documents without groups are public. ``groups=None`` at search time means a trusted local
caller (no restriction); ``groups=[]`` means public documents only.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .calibration import load_calibration
from .chunking import Chunker, make_doc_id
from .config import KBConfig
from .errors import KBError
from .store.docstore import DOCSTORE_FILE, DocStore, check_kb_dir, damaged
from .store.indexes import Indexes
from .store.manifest import check_embedder, read_manifest, write_manifest
from .types import Hit, IngestReport

if TYPE_CHECKING:
    from .answering import Answer, ChatSession, QueryEngine, StreamingAnswer
    from .embedding import Embedder
    from .ingest_ray import RayOptions
    from .retrieval import Retriever
    from .store.vector import DenseIndex
    from .tuning import TuneReport

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.toml"


class KnowledgeBase:
    def __init__(self, path: str | os.PathLike[str], config: KBConfig | dict[str, Any] | None = None, *,
                 adapter: str | os.PathLike[str] | None = None, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        check_kb_dir(self.path, create)  # KBError: a file, a lost docstore, not a KB (with create=False)
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_file = self.path / CONFIG_FILE
        base = KBConfig.load(cfg_file) if cfg_file.exists() else KBConfig()
        if isinstance(config, KBConfig):
            self.config = config
        elif isinstance(config, dict):
            self.config = base.merged(config)
        else:
            self.config = base
        self.manifest = read_manifest(self.path)
        if self.manifest is None or not cfg_file.exists():
            self.config.save(cfg_file)
        self.adapter = adapter
        self.docstore = DocStore(self.path / DOCSTORE_FILE)
        self.indexes = Indexes(self.path, self.docstore, lambda: self.dim, self.config.dense)
        self._retriever: Retriever | None = None
        self._chunker: Chunker | None = None
        self._engine: QueryEngine | None = None
        self._lock = threading.RLock()
        self._write_depth = 0
        #: the docstore version the in-memory indexes reflect (None: unknown; see refresh())
        self._synced: int | None = None
        if self.manifest is not None:
            check_embedder(self.manifest, self.embedder.name)

    # -- parts (lazy) ---------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        from .embedding import get_embedder

        return get_embedder(self.config.embedding)

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            emb = self.embedder
            self._chunker = Chunker(self.config.chunking, emb.count_tokens, emb.max_tokens)
        return self._chunker

    @property
    def dense(self) -> DenseIndex:
        return self.indexes.dense

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            with self._lock:
                if self._retriever is None:
                    self._retriever = self._make_retriever()
        return self._retriever

    def _make_retriever(self) -> Retriever:
        from .retrieval import Retriever

        return Retriever(self.docstore, self.indexes.dense, self.indexes.sparse, self.embedder,
                         self.config.retrieval, load_calibration(self.path, self.embedder.name))

    def refresh(self) -> bool:
        """Follow changes other processes made (``kb ingest`` while ``kb serve`` runs): when the docstore's
        change counter moved since the indexes were loaded, re-open them from their files (under the shared
        lock, so never in the middle of a write) and drop the answer cache. One read of the counter when
        nothing changed; skipped (False) while a writer is busy, so the next call catches up. Returns
        whether the indexes were re-opened after a change."""
        if self.docstore.version == self._synced or not self._lock.acquire(blocking=False):
            return False
        try:
            if self._write_depth:
                return False
            with open(self.path / ".lock", "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # another process is writing: keep serving what we have
                    return False
                try:
                    changed = self._synced is not None
                    self._reopen_indexes(eager=True)
                    return changed
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _reopen_indexes(self, eager: bool = False) -> None:
        """Replace the in-memory indexes by those on disk (the caller holds the file lock, so the files
        match the docstore); in-flight searches finish on the old ones."""
        version = self.docstore.version
        indexes = Indexes(self.path, self.docstore, lambda: self.dim, self.config.dense)
        if eager:
            indexes.open()
        self.indexes = indexes
        if self._retriever is not None:
            self._retriever = self._make_retriever()
        if self._engine is not None:
            self._engine.clear_cache()
        self._synced = version

    def update_config(self, overrides: dict[str, Any]) -> None:
        """Apply ``{"section": {"key": value}}`` (validated), save ``config.toml`` and rebuild the answer
        engine so the next question uses the new settings."""
        with self._lock:
            self.config = self.config.merged(overrides)
            self.config.save(self.path / CONFIG_FILE)
            self._engine = None
            if self._retriever is not None:
                self._retriever.config = self.config.retrieval

    def reload_calibration(self) -> None:
        """Re-read ``calibration.json`` (after ``kb calibrate``) for the next search."""
        if self._retriever is not None:
            self._retriever.calibration = load_calibration(self.path, self.embedder.name)

    @property
    def version(self) -> int:
        """Bumps on every change of content or labels (cache key for answers)."""
        return self.docstore.version

    def _save_indexes(self) -> None:
        self.indexes.save()
        emb = self.embedder
        if self.manifest is None or (self.manifest.get("embedding") or {}).get("name") != emb.name:
            self.manifest = write_manifest(self.path, {"backend": emb.backend, "name": emb.name,
                                                       "dim": self.dim, "max_tokens": emb.max_tokens},
                                           self.manifest)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """One writer at a time per knowledge base, across processes (re-entrant within one)."""
        with self._lock:
            if self._write_depth:
                self._write_depth += 1
                try:
                    yield
                finally:
                    self._write_depth -= 1
                return
            with open(self.path / ".lock", "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                self._write_depth = 1
                synced: int | None = None
                try:
                    if self.manifest is not None:
                        check_embedder(self.manifest, self.embedder.name, self.dim)
                    if self._synced != self.docstore.version:  # never write indexes older than the docstore
                        self._reopen_indexes()
                    self.indexes.remove_stale_temps()  # what a writer killed mid-save left
                    yield
                    synced = self.docstore.version
                finally:
                    self._synced = synced  # None after a failed write: the next refresh re-opens
                    self._write_depth = 0
                    fcntl.flock(fh, fcntl.LOCK_UN)

    # -- public API -----------------------------------------------------------------------------------
    def ingest(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
               include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
               groups: Sequence[str] | None = None, tags: Sequence[str] | None = None,
               prune: bool = False, show_progress: bool | None = None, engine: str | None = None,
               ray_options: RayOptions | dict[str, Any] | None = None) -> IngestReport:
        """Add or update files and folders; unchanged files (same content hash) are skipped. ``engine``:
        "local" or "ray" (default ``[ingest] engine``); ``ray_options``: :class:`~.ingest_ray.RayOptions`."""
        from .ingest_ray import make_ingestor

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        with self._writer():
            ingestor = make_ingestor(self.docstore, self.indexes, self.embedder, self.chunker,
                                     self.config.ingest, self.config.embedding, engine=engine,
                                     ray_options=ray_options, groups=groups, tags=tags,
                                     show_progress=show_progress)
            report = ingestor.run(paths, include=include, exclude=exclude, prune=prune)
            self._save_indexes()
            if self._gate_is_stale(report.chunks_added + report.chunks_removed):
                import time

                t0 = time.perf_counter()
                try:
                    self.calibrate_gate()
                except KBError as exc:
                    logger.warning("unknown gate not refitted: %s", exc)
                report.timings["gate_s"] = time.perf_counter() - t0
            return report

    def _resolve_doc(self, source: str | os.PathLike[str]) -> str | None:
        from .ingest import normalise_path

        text = str(source)
        if self.docstore.get_document(text) is not None:
            return text
        doc_id = make_doc_id(normalise_path(text))
        if self.docstore.get_document(doc_id) is not None:
            return doc_id
        matches = [d.doc_id for d in self.docstore.documents()
                   if d.path.endswith(os.sep + text.lstrip(os.sep)) or d.path == text]
        return matches[0] if len(matches) == 1 else None

    def delete(self, source: str | os.PathLike[str]) -> int:
        """Remove one document (by path, unique path suffix or doc id). Returns chunks removed."""
        with self._writer():
            doc_id = self._resolve_doc(source)
            if doc_id is None:
                raise KBError(f"no document matches {str(source)!r} (see `kb stats` / kb.documents())")
            removed = self.docstore.delete_document(doc_id)
            self.indexes.remove(removed)
            self._save_indexes()
            return len(removed)

    def search(self, query: str, k: int = 5, *, groups: Sequence[str] | None = None,
               filters: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` most relevant chunks readable by ``groups`` and matching ``filters``."""
        return self.retriever.search(query, k=k, groups=groups, filters=filters)

    def verify(self) -> dict[str, Any]:
        """The on-disk state, not repaired (``kb verify``): docstore integrity, derived files, ids, ``ok``."""
        return self.indexes.verify()

    def repair(self) -> dict[str, Any]:
        """Rebuild every derived file from the docstore (``kb repair``), then :meth:`verify`. A damaged
        docstore cannot be rebuilt: KBError (restore it from a backup)."""
        with self._writer():
            problem = self.docstore.check()
            if problem != "ok":
                raise damaged(self.docstore.path, problem)
            rebuilt = self.indexes.rebuild()
            self._reopen_indexes()
        return {"rebuilt": rebuilt, **self.verify()}

    def documents(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.docstore.documents()]

    def stats(self) -> dict[str, Any]:
        counts = self.docstore.counts()
        types: dict[str, int] = {}
        for d in self.docstore.documents():
            types[d.file_type or "?"] = types.get(d.file_type or "?", 0) + 1
        size = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        manifest = self.manifest or {}
        return {"path": str(self.path), "documents": counts["documents"], "chunks": counts["chunks"],
                "version": self.version, "file_types": types, "embedding": manifest.get("embedding"),
                "updated": manifest.get("updated"), "disk_bytes": size}

    # -- answers (query engine) -----------------------------------------------------------------------
    @property
    def engine(self) -> QueryEngine:
        if self._engine is None:
            self._engine = self._build_engine()
        return self._engine

    def engine_with(self, overrides: dict[str, Any] | None = None, *,
                    adapter: str | os.PathLike[str] | None = None) -> QueryEngine:
        """A separate answer engine with ``overrides`` (``{"section": {"key": value}}``) applied in memory
        and, when given, ``adapter``: to measure settings before adopting them (``kb tune``). Nothing is
        saved."""
        return self._build_engine(self.config.merged(overrides) if overrides else self.config, adapter)

    def _build_engine(self, cfg: KBConfig | None = None,
                      adapter: str | os.PathLike[str] | None = None) -> QueryEngine:
        """The QueryEngine over this knowledge base (:func:`kb_assistant.answering.build.build_engine`)."""
        from .answering.build import adapter_for, build_engine

        cfg = cfg or self.config

        def search(query: str, k: int, groups: Any = None) -> list[Hit]:
            return self.search(query, k, groups=groups)

        return build_engine(cfg, kb_path=self.path, search=search, version_fn=lambda: self.version,
                            sparse=self.indexes.sparse, embedder=lambda: self.embedder,
                            adapter=adapter or adapter_for(self.path, cfg, self.adapter))

    def calibrate_gate(self, **overrides: Any) -> dict[str, Any]:
        """Fit this knowledge base's unknown gate on probe questions it generates about itself (no
        labelled data; :mod:`kb_assistant.gate`) and store it in ``config.toml`` ``[gate] fitted``.
        ``overrides``: any ``[gate]`` setting for this fit (probes, seed, targets...). Returns the report."""
        from .gate import fit_gate, fit_options

        cfg = self.config.gate.replace(**overrides) if overrides else self.config.gate
        models, report = fit_gate(lambda q, k: self.search(q, k), self.docstore, self.indexes.sparse,
                                  **fit_options(cfg, self.config.query.k))
        fitted = {"models": {lang: m.to_dict() for lang, m in models.items()}, "report": report}
        self.update_config({"gate": {**overrides, "fitted": fitted}})
        return report

    def tune(self, *, show_progress: bool | None = None, **options: Any) -> TuneReport:
        """Fine-tune this knowledge base's generator on itself within a time budget and make the adapter
        its default when it measures better on held-out probes (:mod:`kb_assistant.tuning`). ``options``:
        :class:`~kb_assistant.tuning.TuneConfig` fields (budget_minutes, steps, seed, adopt, ...)."""
        from .tuning import TuneConfig, tune

        return tune(self, TuneConfig(**options), show_progress=show_progress)

    def _gate_is_stale(self, changed_chunks: int) -> bool:
        cfg = self.config.gate
        total = self.docstore.counts()["chunks"]
        if cfg.auto_refit_share is None or cfg.mode == "threshold" or total < cfg.min_chunks:
            return False
        return not cfg.fitted or changed_chunks > cfg.auto_refit_share * total

    def ask(self, question: str, **params: Any) -> Answer:
        """Answer from the knowledge base, with citations; the fixed "unknown" template (and no generator
        call) when no passage is relevant enough. ``params``: k, groups, answer_mode, use_cache and any
        generation setting (max_new_tokens, temperature, top_k, top_p, repetition_penalty, num_beams,
        length_penalty, seed)."""
        return self.engine.ask(question, **params)

    def ask_stream(self, question: str, **params: Any) -> StreamingAnswer:
        """Like :meth:`ask`, as an iterable of text pieces; ``.answer`` holds the Answer once exhausted."""
        return self.engine.ask_stream(question, **params)

    def chat(self, **params: Any) -> ChatSession:
        """A conversation with bounded history; follow-up questions are rewritten before retrieval."""
        return self.engine.chat(**params)

    def as_llama_index_retriever(self, k: int = 5, groups: Sequence[str] | None = None) -> Any:
        """A LlamaIndex ``BaseRetriever`` over this knowledge base (needs llama-index-core)."""
        from .integrations.llama_index import as_llama_index_retriever

        return as_llama_index_retriever(self, k=k, groups=groups)

    def as_llama_index_query_engine(self, **kwargs: Any) -> Any:
        """A LlamaIndex query engine answering with :meth:`ask` (see integrations.llama_index_engine)."""
        from .integrations.llama_index_engine import as_llama_index_query_engine

        return as_llama_index_query_engine(self, **kwargs)

    def close(self) -> None:
        try:
            self.indexes.save()
        except Exception as exc:  # noqa: BLE001 - closing must not raise; the docstore stays the truth
            logger.warning("%s: saving the indexes on close failed (%s); they are rebuilt from the docstore "
                           "on next open", self.path, exc)
        self.docstore.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.path)!r})"
