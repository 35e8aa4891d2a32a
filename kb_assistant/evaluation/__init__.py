"""Evaluation: QA sets (``qa``) and retrieval metrics (``metrics``). Pure Python, cheap to import."""

from kb_assistant.evaluation.metrics import (
    QuestionResult,
    RetrievalReport,
    best_threshold,
    build_report,
    evaluate_retrieval,
    first_relevant_rank,
    hit_matches,
    normalize_for_match,
    parallel_page_matches,
    percentile,
    retrieval_metrics,
    summarize,
)
from kb_assistant.evaluation.qa import QAItem, load_qa, parse_qa_lines, validate_record

__all__ = [
    "QAItem",
    "QuestionResult",
    "RetrievalReport",
    "best_threshold",
    "build_report",
    "evaluate_retrieval",
    "first_relevant_rank",
    "hit_matches",
    "load_qa",
    "normalize_for_match",
    "parallel_page_matches",
    "parse_qa_lines",
    "percentile",
    "retrieval_metrics",
    "summarize",
    "validate_record",
]
