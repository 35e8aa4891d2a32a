"""What the answer stage produces and passes between its steps: :class:`Answer`, the per-question
state :class:`Prepared`, and the :class:`Steps` the streaming path calls back into."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..config import GenerationConfig, QueryConfig
from ..evidence import Evidence, Grounding
from ..types import Hit

if TYPE_CHECKING:
    from ..prompts import PromptContext


@dataclass
class Answer:
    """The result of a question. ``citations`` maps each [n] in ``text`` to its hit."""

    text: str
    unknown: bool
    sources: list[Hit] = field(default_factory=list)
    citations: dict[int, Hit] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: "generated" | "extractive" | "unknown" | "refused"
    mode: str = "generated"
    lang: str = "en"
    supported: bool = False
    question: str = ""
    #: the question actually searched (the rewritten follow-up in a chat)
    query: str = ""
    support: float = 0.0
    cached: bool = False
    #: the unknown gate's confidence that the hits answer the question (a probability when the knowledge
    #: base's fitted gate decided, else the top hit's calibrated score)
    confidence: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "unknown": self.unknown, "mode": self.mode, "lang": self.lang,
            "supported": self.supported, "support": round(self.support, 3), "question": self.question,
            "query": self.query, "cached": self.cached, "confidence": round(self.confidence, 4),
            "sources": [h.to_dict() for h in self.sources],
            "citations": {str(n): {"source": h.source, "page": h.page, "chunk_id": h.chunk_id}
                          for n, h in self.citations.items()},
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
        }


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Prepared:
    """State shared by ask and ask_stream between retrieval and generation."""

    def __init__(self, question: str, query: str, lang: str, t0: float) -> None:
        self.question, self.query, self.lang, self.t0 = question, query, lang, t0
        self.timings: dict[str, float] = {}
        self.answer: Answer | None = None  # set when finished early (refused, cached, unknown)
        self.hits: list[Hit] = []  # what retrieval returned (the evidence comes from them)
        self.sources: list[Hit] = []
        self.evidence: list[Evidence] = []
        self.ev_number: list[int] = []  # prompt number [n] of each evidence sentence
        self.messages: list[dict[str, str]] = []
        self.gen_config: GenerationConfig | None = None
        self.cache_key: tuple[Any, ...] | None = None
        self.confidence = 0.0
        self.quote_ctx: PromptContext | None = None  # the evidence a quote would use (meaning too)


class Steps(Protocol):
    """The parts of :class:`~kb_assistant.answering.engine.QueryEngine` that streaming uses."""

    config: QueryConfig

    @property
    def generator(self) -> Any: ...

    def _finish(self, prep: Prepared, answer: Answer) -> Answer: ...

    def _first_words_ok(self, prep: Prepared, text: str) -> bool | None: ...

    def grounding(self, prep: Prepared, text: str, question: str = "") -> Grounding: ...

    def _extractive(self, prep: Prepared, support: float = 0.0) -> Answer: ...

    def _quote(self, prep: Prepared, support: float = 0.0) -> Answer: ...

    def _cite(self, prep: Prepared, text: str, strip_invalid: bool = True) -> tuple[str, dict[int, Hit]]: ...
