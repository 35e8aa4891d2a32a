"""Distributed ingest on Ray, and the choice of engine (:func:`make_ingestor`: local or Ray).

The Ray engine: the driver walks and checks, Ray Data parses and embeds, the driver commits.

    driver    walk -> check_file (content hash vs the docstore)                   [ingest.check_file]
    Ray Data  from_items(files to parse)
              -> map_batches(_parse_rows)   tasks: load + chunk, one row per chunk [ingest.parse_file]
              -> map_batches(_EmbedActor)   actor pool, one embedder per actor, batches of
                                            ``embed_batch_chunks`` (num_gpus per actor on GPU nodes)
    driver    iter_batches -> rows regrouped into files -> Writer.commit            [ingest.Writer]

The single writer commits each file in one docstore transaction exactly as the local engine does, in
walk order (Ray Data's ``preserve_order``), and a vector already stored wins over a fresh one, so chunk
ids, row ids, docstore rows and search results are those of a local ingest (vectors equal within float
tolerance). Killing the driver loses only files not yet committed, which the next run's hash check
picks up; a dead worker's task is retried by Ray (Ray Data's defaults: tasks retried, actors restarted) and
rows of a file already received are ignored, so nothing is committed twice.

Ray Data fits: it streams with backpressure, pools stateful actors (one model each) and places them on
GPUs. Its pipeline needs its input up front, so the driver holds the list of files to parse (about
0.3 KB a file, like the report); texts and vectors stream. Workers read files by path: on several
machines the folder must be mounted at the same path everywhere, with kb-assistant (and its model)
installed on every node. Not re-embedding texts already stored is the local engine's saving only: here
every chunk of a changed file is embedded (the stored vector is still the one kept).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import ConfigError, KBError
from .ingest import Ingestor, Parsed, Pending, Scope, check_file, embed_hash, parse_file
from .settings import Settings, setting
from .store.catalog import check_groups
from .store.docstore import DocumentRecord
from .types import Chunk, FailedItem, IngestReport

if TYPE_CHECKING:
    from .chunking import Chunker
    from .config import ChunkingConfig, EmbeddingConfig, IngestConfig
    from .embedding import Embedder
    from .ingest import Writer
    from .store.docstore import DocStore
    from .store.indexes import Indexes

logger = logging.getLogger(__name__)

#: environment handed to Ray workers when set on the driver (offline model hub, the model's path)
_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "KB_EMBEDDER_PATH")


@dataclass
class RayOptions(Settings):
    """Where and how wide the Ray engine runs (``kb ingest --engine ray --address A --workers N``)."""

    SECTION: ClassVar[str | None] = None
    address: str | None = setting(None, doc="`auto`, `ray://head:10001` or a head address; unset: a local "
                                            "cluster for this ingest (a Ray session already running in "
                                            "this process is always used as it is)")
    workers: int = setting(1, lo=1, hi=4096, doc="embedding actors, one model each")
    gpus_per_worker: float = setting(0.0, lo=0, hi=16, doc="GPUs of each embedding actor (1: a model per "
                                                           "GPU)")
    cpus_per_worker: float = setting(1.0, lo=0.25, hi=256, doc="CPUs of each embedding actor (its torch "
                                                              "threads)")
    files_per_task: int = setting(8, lo=1, hi=100_000, doc="files one parse task loads and chunks")
    parse_memory_mb: float = setting(512.0, lo=1, hi=1_000_000, doc="memory a parse task reserves (Ray runs "
                                                                   "no more parse tasks than fit)")


_CHUNKERS: dict[str, Chunker] = {}


def _worker_chunker(embedding: EmbeddingConfig, chunking: ChunkingConfig) -> Chunker:
    """The chunker of this worker process (the embedder's tokenizer loads once per process)."""
    from .chunking import Chunker
    from .embedding import get_embedder

    key = json.dumps([embedding.to_dict(), chunking.to_dict()], sort_keys=True)
    chunker = _CHUNKERS.get(key)
    if chunker is None:
        emb = get_embedder(embedding)
        chunker = _CHUNKERS[key] = Chunker(chunking, emb.count_tokens, emb.max_tokens)
    return chunker


def _row_schema() -> Any:
    import pyarrow as pa

    s, i, f = pa.string(), pa.int64(), pa.float64()
    return pa.schema([("doc_id", s), ("shown", s), ("path", s), ("content_hash", s), ("mtime", f),
                      ("size", i), ("is_update", pa.bool_()), ("file_type", s), ("parser", s),
                      ("n_chunks", i), ("error", s), ("parse_s", f), ("chunk_id", s), ("position", i),
                      ("text", s), ("metadata", s), ("n_tokens", i), ("embed_text", s), ("embed_hash", s)])


def _rows(pending: Pending, item: Parsed | FailedItem) -> list[dict[str, Any]]:
    file = {"doc_id": pending.doc_id, "shown": pending.shown, "path": pending.path,
            "content_hash": pending.content_hash, "mtime": pending.mtime, "size": pending.size,
            "is_update": pending.is_update}
    if isinstance(item, FailedItem):
        return [{**file, "error": item.reason, "n_chunks": 0, "position": -1}]
    n = len(item.chunks)
    rec = item.record
    return [{**file, "file_type": rec.file_type, "parser": rec.parser, "n_chunks": n, "error": "",
             "parse_s": item.parse_s if c.position == item.chunks[0].position else 0.0,
             "chunk_id": c.chunk_id, "position": c.position, "text": c.text,
             "metadata": json.dumps(c.metadata, ensure_ascii=False), "n_tokens": c.n_tokens,
             "embed_text": c.embed_text, "embed_hash": embed_hash(c.embed_text)} for c in item.chunks]


def _parse_rows(batch: Any, *, embedding: EmbeddingConfig, chunking: ChunkingConfig, scope: Scope) -> Any:
    """Ray task: load and chunk a block of files; one row per chunk, one row per failed file."""
    import pyarrow as pa

    chunker = _worker_chunker(embedding, chunking)
    rows: list[dict[str, Any]] = []
    for fields in batch.to_pylist():
        pending = Pending(**fields)
        rows.extend(_rows(pending, parse_file(pending, chunker, scope)))
    return pa.Table.from_pylist(rows, schema=_row_schema())


class _EmbedActor:
    """Ray actor: one embedder, fed batches of chunk rows; equal texts in a batch are embedded once."""

    def __init__(self, embedding: EmbeddingConfig, expect: str) -> None:
        from .embedding import get_embedder

        self.embedder = get_embedder(embedding)
        if self.embedder.name != expect:
            raise KBError(f"Ray worker has embedding model {self.embedder.name}, the knowledge base {expect}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        todo: dict[str, str] = {}
        for err, h, text in zip(batch["error"], batch["embed_hash"], batch["embed_text"], strict=True):
            if not err and h not in todo:
                todo[h] = text
        vecs = dict(zip(todo, self.embedder.embed_documents(list(todo.values())), strict=True))
        out = np.zeros((len(batch["error"]), self.embedder.dim), dtype=np.float32)
        for j, h in enumerate(batch["embed_hash"]):
            if h in vecs:
                out[j] = vecs[h]
        batch["vector"] = out
        batch["embed_s"] = np.zeros(len(out), dtype=np.float64)
        if len(out):
            batch["embed_s"][0] = time.perf_counter() - t0
        return batch


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class _Open:
    parts: dict[int, tuple[Chunk, np.ndarray]]
    parse_s: float = 0.0


class _Assembler:
    """Chunk rows back into files. Rows of one file may come in several batches; rows of a file already
    complete (a retried task's output) are ignored."""

    def __init__(self, groups: list[str], tags: list[str]) -> None:
        self.groups, self.tags = groups, tags
        self.open: dict[str, _Open] = {}
        self.done: set[str] = set()

    def add(self, row: dict[str, Any], vector: np.ndarray, vectors: dict[str, np.ndarray]
            ) -> Parsed | FailedItem | None:
        """The file once its last row came in (its vectors added to ``vectors``), else None."""
        doc_id = str(row["doc_id"])
        if doc_id in self.done:
            return None
        if row["error"]:
            self.done.add(doc_id)
            return FailedItem(str(row["shown"]), str(row["error"]))
        file = self.open.setdefault(doc_id, _Open({}))
        chunk = Chunk(str(row["chunk_id"]), doc_id, int(row["position"]), str(row["text"]),
                      json.loads(str(row["metadata"])), int(row["n_tokens"]), str(row["embed_text"]))
        if chunk.position not in file.parts:
            file.parts[chunk.position] = (chunk, vector)
            file.parse_s += float(row["parse_s"] or 0.0)
        if len(file.parts) < int(row["n_chunks"]):
            return None
        del self.open[doc_id]
        self.done.add(doc_id)
        record = DocumentRecord(doc_id, str(row["path"]), str(row["content_hash"]), float(row["mtime"]),
                                int(row["size"]), _text(row["file_type"]), groups=list(self.groups),
                                tags=list(self.tags), parser=_text(row["parser"]))
        chunks = [file.parts[p][0] for p in sorted(file.parts)]
        vectors.update((embed_hash(c.embed_text), file.parts[c.position][1]) for c in chunks)
        return Parsed(record, chunks, bool(row["is_update"]), file.parse_s)


@contextlib.contextmanager
def _ray_session(options: RayOptions) -> Iterator[None]:
    """The running Ray session, a connection to ``options.address``, or a local cluster for this run."""
    import ray

    if ray.is_initialized():
        yield
        return
    env = {k: os.environ[k] for k in _ENV if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING,
                              "include_dashboard": False}
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:  # logical CPUs: the actors' plus one for parsing, even on a small machine
        need = math.ceil(options.workers * options.cpus_per_worker) + 1
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, need), **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def _check_resources(options: RayOptions) -> None:
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    need = options.workers * options.cpus_per_worker
    if cpus < need + 1:
        raise KBError(f"the Ray cluster has {cpus:g} CPUs: {options.workers} workers x "
                      f"{options.cpus_per_worker:g} CPUs leave none for parsing; use fewer workers")
    if options.gpus_per_worker * options.workers > gpus:
        raise KBError(f"the Ray cluster has {gpus:g} GPUs: {options.workers} workers x "
                      f"{options.gpus_per_worker:g} GPUs do not fit")


class RayIngestor(Ingestor):
    """One ingest run on Ray over a knowledge base's parts (plus the embedding config, which the workers
    rebuild their embedder from). The caller holds the writer lock."""

    def __init__(self, docstore: DocStore, indexes: Indexes, embedder: Embedder, chunker: Chunker,
                 config: IngestConfig, *, embedding: EmbeddingConfig,
                 options: RayOptions | dict[str, Any] | None = None, groups: Sequence[str] | None = None,
                 tags: Sequence[str] | None = None, show_progress: bool | None = None) -> None:
        super().__init__(docstore, indexes, embedder, chunker, config, groups=groups, tags=tags,
                         show_progress=show_progress)
        self.embedding = embedding
        self.options = options if isinstance(options, RayOptions) else RayOptions.from_dict(options or {})

    def run(self, paths: Iterable[str | os.PathLike[str]], *, include: Sequence[str] | None = None,
            exclude: Sequence[str] | None = None, prune: bool = False) -> IngestReport:
        start = time.perf_counter()
        try:
            import ray  # noqa: F401
        except ImportError:
            raise KBError("engine='ray' needs Ray: pip install 'kb-assistant[ray]'") from None
        report = IngestReport()
        roots = [Path(p) for p in paths]
        writer = self._writer(report)
        seen: set[str] | None = set() if prune else None
        todo = [asdict(p) for e in self._walk(roots, include, exclude)
                if (p := check_file(self.docstore, e, self.scope, report, seen)) is not None]
        t_check = time.perf_counter() - start
        extra: dict[str, float] = {"check_s": t_check}
        if todo:
            with _ray_session(self.options):
                _check_resources(self.options)
                extra["embed_s_workers"] = self._stream(todo, writer)
        if seen is not None:
            writer.prune(roots, seen)
        return writer.finish(start, **extra)

    def _dataset(self, todo: list[dict[str, Any]]) -> Any:
        import ray

        opts, cfg = self.options, self.config
        blocks = max(1, math.ceil(len(todo) / opts.files_per_task))
        ds = ray.data.from_items(todo, override_num_blocks=blocks)
        # the memory reservation also keeps parsing in tasks of its own (not fused into the actors), so
        # files are parsed while the actors embed, as the local engine's parser thread does
        ds = ds.map_batches(_parse_rows, batch_format="pyarrow", batch_size=None, num_cpus=1,
                            memory=opts.parse_memory_mb * 2**20,
                            fn_kwargs={"embedding": self.embedding, "chunking": self.chunker.config,
                                       "scope": self.scope})
        gpus = opts.gpus_per_worker or None
        return ds.map_batches(_EmbedActor, batch_format="numpy", batch_size=cfg.embed_batch_chunks,
                              compute=ray.data.ActorPoolStrategy(size=opts.workers),
                              num_cpus=opts.cpus_per_worker, num_gpus=gpus,
                              fn_constructor_kwargs={"embedding": self.embedding,
                                                     "expect": self.embedder.name})

    def _stream(self, todo: list[dict[str, Any]], writer: Writer) -> float:
        """Run the pipeline and commit what streams back; returns the workers' embedding seconds."""
        from ray.data import DataContext
        from ray.exceptions import RayError
        from tqdm.auto import tqdm

        ctx = DataContext.get_current()
        saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
        ctx.execution_options.preserve_order = True  # commit in walk order: the local engine's row ids
        ctx.enable_progress_bars = False
        data_log = logging.getLogger("ray.data")  # its per-run INFO lines only when we are debugging
        saved_level = data_log.level
        if not logger.isEnabledFor(logging.DEBUG):
            data_log.setLevel(logging.WARNING)
        assembler = _Assembler(self.groups, self.tags)
        bar = tqdm(total=len(todo), desc="ingest (ray)", unit="file", disable=not self.show_progress)
        embed_s = 0.0
        try:
            for batch in self._dataset(todo).iter_batches(batch_size=None, batch_format="numpy"):
                embed_s += float(batch["embed_s"].sum())
                ready: list[Parsed] = []
                vectors: dict[str, np.ndarray] = {}
                for j, row in enumerate(_row_dicts(batch)):
                    item = assembler.add(row, batch["vector"][j], vectors)
                    if item is not None:
                        bar.update(1)
                    if isinstance(item, FailedItem):
                        writer.report.failed.append(item)
                    elif item is not None:
                        ready.append(item)
                writer.commit(ready, vectors)
        except RayError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise KBError(f"Ray ingest failed: {first[:300]}") from exc
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
            data_log.setLevel(saved_level)
            bar.close()
        return embed_s


def make_ingestor(docstore: DocStore, indexes: Indexes, embedder: Embedder, chunker: Chunker,
                  config: IngestConfig, embedding: EmbeddingConfig, *, engine: str | None = None,
                  ray_options: RayOptions | dict[str, Any] | None = None, groups: Sequence[str] | None = None,
                  tags: Sequence[str] | None = None, show_progress: bool | None = None) -> Ingestor:
    """The ingest engine for a run: ``engine`` (default ``config.engine``), checked as the setting is."""
    check_groups(groups)  # a bare string would become its letters
    check_groups(tags, "tags")
    cfg = config if engine is None else config.replace(engine=engine)
    if ray_options and cfg.engine != "ray":
        raise ConfigError("ray_options need engine='ray'")
    if cfg.engine == "ray":
        return RayIngestor(docstore, indexes, embedder, chunker, cfg, embedding=embedding,
                           options=ray_options, groups=groups, tags=tags, show_progress=show_progress)
    return Ingestor(docstore, indexes, embedder, chunker, cfg, groups=groups, tags=tags,
                    show_progress=show_progress)


def _row_dicts(batch: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    keys = [k for k in batch if k not in ("vector", "embed_s")]
    for j in range(len(batch["doc_id"])):
        yield {k: batch[k][j] for k in keys}
