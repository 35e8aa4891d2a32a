"""Retrieval evaluation of a knowledge base on a QA file, and calibration of ``Hit.score``.

    report = evaluate_kb(kb, "my_questions.jsonl", k=10)   # RetrievalReport
    print(report.format_table())
    threshold = calibrate(kb, "my_qa.jsonl")   # refits the score calibration, returns the gate threshold

Calibration: for every question the top hit's evidence (dense cosine, BM25 / query maximum) is labelled
1 when the hit is relevant (:func:`hit_matches`) and 0 otherwise (always 0 for unanswerable
questions); a logistic regression on these features becomes ``Hit.score``, saved to the knowledge
base's ``calibration.json`` for the embedder in use. The returned threshold is the unknown-gate
threshold on the recalibrated top-hit score (:func:`best_threshold`, default >= 90 % of unanswerable
questions refused), also stored in ``calibration.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..gate.model import fit_logistic
from .metrics import (
    MAX_FALSE_UNKNOWN,
    TARGET_UNKNOWN_RECALL,
    RetrievalReport,
    evaluate_retrieval,
    hit_matches,
)
from .qa import QAItem, load_qa

if TYPE_CHECKING:
    from ..knowledge_base import KnowledgeBase

logger = logging.getLogger(__name__)


def evaluate_kb(kb: KnowledgeBase, qa_path: str | os.PathLike[str], k: int = 10,
                groups: Sequence[str] | None = None, *, filters: dict[str, Any] | None = None,
                show_progress: bool = False, target_unknown_recall: float = TARGET_UNKNOWN_RECALL,
                max_false_unknown: float | None = MAX_FALSE_UNKNOWN,
                split: str | None = None) -> RetrievalReport:
    """Search every question of ``qa_path`` (of its ``split`` when given) in ``kb`` and report
    recall@1/5/10, MRR, nDCG, latency."""
    items = load_qa(qa_path, split=split)
    kb.search("warm-up", k=1, groups=groups)  # load models / indexes outside the timed searches
    return evaluate_retrieval(lambda q: kb.search(q, k=k, groups=groups, filters=filters), items, k=k,
                              show_progress=show_progress, target_unknown_recall=target_unknown_recall,
                              max_false_unknown=max_false_unknown)


def top_hit_features(kb: KnowledgeBase, items: Sequence[QAItem], k: int = 10) -> tuple[np.ndarray,
                                                                                         np.ndarray]:
    """(features [dense_cosine, bm25_norm] of each question's top hit, label: top hit is relevant)."""
    feats, labels = [], []
    for item in items:
        hits = kb.search(item.question, k=k)
        if not hits:
            continue
        top = hits[0]
        feats.append([top.metadata.get("dense_score", 0.0), top.metadata.get("bm25_norm", 0.0)])
        labels.append(1.0 if item.answerable and hit_matches(top, item) else 0.0)
    return np.asarray(feats, dtype=np.float64).reshape(-1, 2), np.asarray(labels, dtype=np.float64)


def calibrate(kb: KnowledgeBase, qa_path: str | os.PathLike[str], *,
              target_unknown_recall: float = TARGET_UNKNOWN_RECALL,
              max_false_unknown: float | None = MAX_FALSE_UNKNOWN,
              k: int = 10, split: str | None = None) -> float:
    """Refit the ``Hit.score`` calibration on ``qa_path``, fit the unknown-gate threshold and save both
    (``calibration.json`` and ``[query] unknown_threshold`` in ``config.toml``); returns the threshold.
    ``split``: fit on that frozen split of the QA file only (normally ``"tune"``)."""
    from ..calibration import CALIBRATION_FILE, Calibration

    items = load_qa(qa_path, split=split)
    x, y = top_hit_features(kb, items, k=k)
    if len(set(y.tolist())) < 2:
        raise ConfigError(f"{qa_path}: calibration needs questions whose top hit is relevant and others "
                          "whose top hit is not (add unanswerable questions)")
    w = fit_logistic(x, y)
    cal = Calibration(*w, source="fitted")
    (kb.path / CALIBRATION_FILE).unlink(missing_ok=True)
    cal.save(kb.path, kb.embedder.name)
    kb.reload_calibration()
    report = evaluate_kb(kb, qa_path, k=k, target_unknown_recall=target_unknown_recall,
                         max_false_unknown=max_false_unknown, split=split)
    threshold = float(report.gate["threshold"]) if report.gate else 0.5
    cal.save(kb.path, kb.embedder.name, {"threshold": threshold, "qa": str(qa_path), "split": split,
                                         "n": int(len(y)),
                                         "gate": report.gate})
    kb.update_config({"query": {"unknown_threshold": round(threshold, 4)}})
    logger.info("calibrated %s: weights %s, threshold %.3f", kb.path, np.round(w, 3).tolist(), threshold)
    return threshold
