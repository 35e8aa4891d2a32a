"""Plain data records that flow through the pipeline: files -> documents -> chunks -> hits -> answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """A unit of text produced by a loader: one page of a PDF, one slide, one sheet, a whole file...

    ``metadata`` keys used downstream: ``page`` (1-based int for paged formats), ``title``,
    ``heading`` (nearest heading), ``section`` (sheet / slide name), ``lang``.
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A piece of a document sized for the embedder."""

    chunk_id: str
    doc_id: str
    position: int
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: tokens of ``embed_text`` as the embedder counts them (specials included)
    n_tokens: int = 0
    #: what is embedded: the text, prefixed with its title/heading path when configured
    embed_text: str = ""


@dataclass
class Hit:
    """One retrieved chunk."""

    text: str
    score: float
    source: str
    page: int | None
    chunk_id: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": self.score,
            "source": self.source,
            "page": self.page,
            "chunk_id": self.chunk_id,
            "metadata": self.metadata,
        }


@dataclass
class FailedItem:
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    #: where the time went (parse, embed, store seconds) and chunks embedded vs re-used
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [f.to_dict() for f in self.failed],
            "chunks_added": self.chunks_added,
            "chunks_removed": self.chunks_removed,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed, {len(self.failed)} failed; "
            f"{self.chunks_added} chunks added in {self.seconds:.1f}s"
        )
