"""The settings of a knowledge base: one typed section per stage, loaded from and saved to TOML.

A knowledge base keeps its own ``config.toml``; ``KnowledgeBase(config=...)`` or CLI flags override it.
Every section is a :class:`~kb_assistant.settings.Settings` dataclass whose fields declare their type,
range or choices once; a bad value fails when the knowledge base opens, naming file, section and key.
``pipeline`` holds the ingest and retrieval sections, ``answer`` the answer-stage and server ones.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..settings import Settings, dumps_toml
from ..storage_utils import atomic_write_text
from .answer import (
    ANSWER_MODES,
    GATE_FEATURES,
    REFUSAL_TEXT,
    GateConfig,
    GenerationConfig,
    GenerationSection,
    QueryConfig,
    SafetyConfig,
    ServerConfig,
    load_word_list,
)
from .pipeline import (
    DEVICES,
    DTYPES,
    ChunkingConfig,
    DenseIndexConfig,
    EmbeddingConfig,
    IngestConfig,
    RetrievalConfig,
)

__all__ = ["ANSWER_MODES", "DEVICES", "DTYPES", "GATE_FEATURES", "REFUSAL_TEXT", "ChunkingConfig",
           "DenseIndexConfig", "EmbeddingConfig", "GateConfig", "GenerationConfig", "GenerationSection",
           "IngestConfig", "KBConfig", "QueryConfig", "RetrievalConfig", "SafetyConfig", "ServerConfig",
           "dumps_toml", "load_word_list"]

logger = logging.getLogger(__name__)

REMOVED_SETTINGS = {"ingest": ("parse_workers",)}


@dataclass
class KBConfig:
    """All sections of a knowledge base's ``config.toml``."""

    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    dense: DenseIndexConfig = field(default_factory=DenseIndexConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    generation: GenerationSection = field(default_factory=GenerationSection)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    @classmethod
    def sections(cls) -> dict[str, type[Settings]]:
        return {f.name: f.default_factory for f in fields(cls)}  # type: ignore[misc]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KBConfig:
        sections = cls.sections()
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in sections:
                raise ConfigError(f"unknown config section [{key}]; allowed: {', '.join(sections)}")
            if not isinstance(value, dict):
                raise ConfigError(f"config section [{key}] must be a table")
            removed = [k for k in REMOVED_SETTINGS.get(key, ()) if k in value]
            if removed:
                logger.warning("[%s] %s: no longer used, ignored", key, ", ".join(removed))
                value = {k: v for k, v in value.items() if k not in removed}
            try:
                kwargs[key] = sections[key].from_dict(value)
            except ConfigError as exc:
                raise ConfigError(f"[{key}] {exc}") from None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}

    def merged(self, overrides: dict[str, Any]) -> KBConfig:
        """A copy with ``{"section": {"field": value}}`` overrides applied (and validated)."""
        data = self.to_dict()
        sections = self.sections()
        for section, values in overrides.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config override for [{section}] must be a mapping")
            if section in sections:
                values = sections[section].normalise(values)
            data.setdefault(section, {}).update(values)
        return KBConfig.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KBConfig:
        """Read and validate a config.toml; any error names the file (and section and key)."""
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), dumps_toml(self.to_dict()))
