"""Answer-quality evaluation: ``kb eval answers`` and ``benchmarks/answers.py``.

For every QA item the question is asked through the streaming API (so time to first token is real)
and scored:

* unknown rate on unanswerable questions (the gate should refuse them) and false-unknown rate on
  answerable ones;
* facts: the answer contains **all** of the item's ``answer_keywords`` (case- and space-insensitive;
  ``keyword_recall`` is the mean share of keywords found);
* citation accuracy: one of the passages the answer cites ([n], else its first source) holds the
  evidence (or matches source and page), judged with the retrieval matcher;
* latency p50/p95 end to end and to the first streamed piece.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import hit_matches, percentile
from .qa import QAItem, load_qa
from .text_metrics import keyword_hit


@dataclass
class AnswerRecord:
    id: str
    kind: str
    answerable: bool
    unknown: bool
    text: str
    keyword_recall: float
    facts: bool
    citation_ok: bool
    total_ms: float
    first_token_ms: float
    mode: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class AnswerReport:
    records: list[AnswerRecord] = field(default_factory=list)

    def _group(self, kind: str | None) -> dict[str, Any]:
        recs = [r for r in self.records if kind is None or r.kind == kind]
        ans = [r for r in recs if r.answerable]
        una = [r for r in recs if not r.answerable]
        answered = [r for r in ans if not r.unknown]
        total = [r.total_ms for r in recs]
        first = [r.first_token_ms for r in recs]
        return {
            "n": len(recs), "answerable": len(ans), "unanswerable": len(una),
            "unknown_rate_unanswerable": sum(r.unknown for r in una) / len(una) if una else None,
            "false_unknown_rate": sum(r.unknown for r in ans) / len(ans) if ans else None,
            "facts_rate": sum(r.facts for r in ans) / len(ans) if ans else None,
            "keyword_recall": sum(r.keyword_recall for r in ans) / len(ans) if ans else None,
            "citation_accuracy": sum(r.citation_ok for r in answered) / len(answered) if answered else None,
            "latency_p50_ms": percentile(total, 50) if total else None,
            "latency_p95_ms": percentile(total, 95) if total else None,
            "first_token_p50_ms": percentile(first, 50) if first else None,
            "first_token_p95_ms": percentile(first, 95) if first else None,
        }

    def summary(self) -> dict[str, Any]:
        kinds = sorted({r.kind for r in self.records})
        return {"overall": self._group(None), **{k: self._group(k) for k in kinds}}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "records": [r.to_dict() for r in self.records]}

    def format_table(self) -> str:
        cols = [("unknown_rate_unanswerable", "unk@unans"), ("false_unknown_rate", "false-unk"),
                ("facts_rate", "facts"), ("citation_accuracy", "cite-ok"), ("latency_p50_ms", "p50 ms"),
                ("latency_p95_ms", "p95 ms"), ("first_token_p50_ms", "1st-tok p50")]
        lines = [f"{'group':14s} {'n':>4s} " + " ".join(f"{name:>11s}" for _, name in cols)]
        for group, row in self.summary().items():
            cells = []
            for key, _ in cols:
                v = row[key]
                cells.append(f"{'-':>11s}" if v is None else
                             f"{v:11.0f}" if key.endswith("_ms") else f"{v:11.3f}")
            lines.append(f"{group:14s} {row['n']:4d} " + " ".join(cells))
        return "\n".join(lines)


def _cited_hits(answer: Any) -> list[Any]:
    cited = list(getattr(answer, "citations", {}).values())
    return cited or list(answer.sources[:1])


def evaluate_answers(ask_stream: Callable[[str], Any], items: Sequence[QAItem], *,
                     show_progress: bool = False) -> AnswerReport:
    """``ask_stream(question)`` returns an iterable of text pieces with ``.answer`` set once exhausted."""
    from tqdm.auto import tqdm

    report = AnswerReport()
    for item in tqdm(items, desc="answers", disable=not show_progress):
        start = time.perf_counter()
        first = None
        stream = ask_stream(item.question)
        pieces = []
        for piece in stream:
            if first is None and piece:
                first = time.perf_counter()
            pieces.append(piece)
        end = time.perf_counter()
        answer = stream.answer
        text = answer.text if answer is not None else "".join(pieces)
        recall = keyword_hit(text, item.answer_keywords)
        cited = _cited_hits(answer) if answer is not None else []
        report.records.append(AnswerRecord(
            id=item.id, kind=item.kind, answerable=item.answerable, unknown=bool(answer and answer.unknown),
            text=text, keyword_recall=recall,
            facts=bool(item.answer_keywords) and recall == 1.0,
            citation_ok=item.answerable and any(hit_matches(h, item) for h in cited),
            total_ms=(end - start) * 1000, first_token_ms=((first or end) - start) * 1000,
            mode=getattr(answer, "mode", "")))
    return report


def evaluate_kb_answers(kb: Any, qa_path: str | os.PathLike[str], *, groups: Sequence[str] | None = None,
                        limit: int | None = None, show_progress: bool = False, split: str | None = None,
                        **params: Any) -> AnswerReport:
    """Ask every question of ``qa_path`` (of its ``split`` when given; answer cache off) and score them."""
    items = load_qa(qa_path, split=split)
    items = items[:limit] if limit else items
    kb.ask("warm-up question about the knowledge base", use_cache=False)  # load models outside timings
    return evaluate_answers(lambda q: kb.ask_stream(q, groups=groups, use_cache=False, **params), items,
                            show_progress=show_progress)
