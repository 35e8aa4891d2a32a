"""Retrieval metrics over a QA set: recall@k, MRR@10, nDCG@10, latency, and the unknown-gate threshold.

Relevance is binary and judged per hit by :func:`hit_matches`; each question is reduced to the rank
of its first relevant hit (``None`` when none of the top ``k`` is relevant). With one relevant item
per question the ideal DCG is 1, so nDCG@10 = 1/log2(1 + rank) for rank <= 10, else 0 (first-hit
nDCG; later relevant hits are not rewarded). Pure Python: no numpy/torch needed.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kb_assistant.evaluation.qa import QAItem
from kb_assistant.types import Hit

logger = logging.getLogger(__name__)

MATCH_MODES = ("any", "evidence", "source")


def normalize_for_match(text: str) -> str:
    """NFKC, drop all whitespace, casefold: the form in which evidence and hit text are compared."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _hit_path(source: str) -> str:
    """A hit's source path in the form it is compared in: ``/`` separators, no ``file://``."""
    return source.replace("\\", "/").removeprefix("file://")


def _item_path(source: str) -> str:
    """A QA item's source path in the form it is compared in: ``/`` separators, relative."""
    return source.replace("\\", "/").lstrip("/")


def _source_matches(hit_source: str, item_source: str) -> bool:
    hit, want = _hit_path(hit_source), _item_path(item_source)
    return hit == want or hit.endswith("/" + want)


def hit_matches(hit: Hit, item: QAItem, mode: str = "any") -> bool:
    """Whether ``hit`` is relevant to ``item``.

    ``evidence``: the hit text contains the item's evidence (whitespace- and case-insensitive).
    ``source``: the hit's source path equals or ends with ``/`` + item.source (so a bare file name
    never matches ``en-US/x.html`` vs ``zh-CN/x.html`` ambiguously), and the page equals item.page
    when the item sets one. ``any``: either of the two.
    """
    if mode not in MATCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(MATCH_MODES)} (got {mode!r})")
    if not item.answerable:
        return False
    evidence = normalize_for_match(item.evidence) if item.evidence else ""
    if mode in ("any", "evidence") and evidence and evidence in normalize_for_match(hit.text):
        return True
    if mode in ("any", "source") and item.source and _source_matches(hit.source, item.source):
        return item.page is None or hit.page == item.page
    return False


def parallel_page_matches(hit: Hit, item: QAItem) -> bool:
    """Whether ``hit`` is ``item``'s page in another language's copy of the same book: the item's source
    is ``<book dir>/<name>`` (one directory per language, as the handbook's ``en-US/`` and ``zh-CN/``)
    and the hit's path ends with ``/<another dir>/<name>``. A knowledge base that holds both books
    answers an English question from the English twin of a Chinese page, as it should; this says so
    (:func:`hit_matches` does not count it). Never for paged sources (PDF translations do not share
    page numbers) nor bare file names."""
    if not item.answerable or not item.source or item.page is not None:
        return False
    want = _item_path(item.source).split("/")
    if len(want) < 2:
        return False
    got = _hit_path(hit.source).split("/")
    return (len(got) >= len(want) and got[len(got) - len(want) + 1:] == want[1:]
            and got[len(got) - len(want)] != want[0])


def first_relevant_rank(hits: Sequence[Hit], item: QAItem, k: int = 10, mode: str = "any") -> int | None:
    """1-based rank of the first relevant hit among the top ``k``, or None."""
    for rank, hit in enumerate(hits[:k], start=1):
        if hit_matches(hit, item, mode):
            return rank
    return None


def retrieval_metrics(
    ranks: Sequence[int | None], ks: Iterable[int] = (1, 5, 10), cutoff: int = 10
) -> dict[str, Any]:
    """recall@k for each k, MRR@cutoff and first-hit nDCG@cutoff from first-relevant ranks.

    Returns ``{"n": N, "recall@1": ..., ..., "mrr@10": ..., "ndcg@10": ...}``; values are None when
    ``ranks`` is empty.
    """
    ks = sorted(set(ks))
    if not ks or ks[0] < 1 or cutoff < 1:
        raise ValueError("ks and cutoff must be positive integers")
    for r in ranks:
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ValueError(f"ranks must be positive integers or None (got {r!r})")
    n = len(ranks)
    out: dict[str, Any] = {"n": n}
    found = [r for r in ranks if r is not None]
    for k in ks:
        out[f"recall@{k}"] = sum(r <= k for r in found) / n if n else None
    out[f"mrr@{cutoff}"] = sum(1.0 / r for r in found if r <= cutoff) / n if n else None
    out[f"ndcg@{cutoff}"] = sum(1.0 / math.log2(r + 1) for r in found if r <= cutoff) / n if n else None
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not 0 <= p <= 100:
        raise ValueError(f"p must be between 0 and 100 (got {p})")
    if not values:
        raise ValueError("percentile of an empty sequence")
    xs = sorted(float(v) for v in values)
    pos = (len(xs) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, min, p5, p25, p50, p75, p95, max of ``values`` (None entries when empty)."""
    keys = ("mean", "min", "p5", "p25", "p50", "p75", "p95", "max")
    if not values:
        return {"n": 0, **{k: None for k in keys}}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "p5": percentile(values, 5),
        "p25": percentile(values, 25),
        "p50": percentile(values, 50),
        "p75": percentile(values, 75),
        "p95": percentile(values, 95),
        "max": max(values),
    }


def gate_stats(threshold: float, pos: Sequence[float], neg: Sequence[float]) -> dict[str, float]:
    """Gate says "unknown" when the top score < threshold; pos = answerable, neg = unanswerable."""
    tp = sum(s < threshold for s in neg)  # unanswerable correctly refused
    fp = sum(s < threshold for s in pos)  # answerable wrongly refused
    unknown_recall = tp / len(neg)
    answer_recall = 1.0 - fp / len(pos)
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * unknown_recall / (precision + unknown_recall) if precision + unknown_recall else 0.0
    return {
        "threshold": threshold,
        "unknown_recall": unknown_recall,
        "answer_recall": answer_recall,
        "balanced_accuracy": (unknown_recall + answer_recall) / 2,
        "unknown_precision": precision,
        "unknown_f1": f1,
    }


#: default gate targets of calibration and reports: refuse >= 90 % of unanswerable questions and, when
#: some threshold allows it, <= 10 % of answerable ones
TARGET_UNKNOWN_RECALL = 0.9
MAX_FALSE_UNKNOWN = 0.1


def best_threshold(
    answerable_scores: Sequence[float],
    unanswerable_scores: Sequence[float],
    target_unknown_recall: float = TARGET_UNKNOWN_RECALL,
    max_false_unknown: float | None = None,
) -> tuple[float, dict[str, Any]]:
    """Pick the unknown-gate threshold from top-hit scores (higher score = more confident).

    The gate answers "unknown" when the top score < threshold. Candidates are the midpoints between
    consecutive distinct observed scores plus one just below / above all of them. Among candidates
    whose unknown recall (share of unanswerable questions refused) is >= ``target_unknown_recall``,
    the one with the highest balanced accuracy wins (ties: higher unknown recall, then lower
    threshold). With ``max_false_unknown`` (e.g. 0.1), candidates must also refuse at most that share
    of answerable questions when any candidate meets both targets (otherwise the recall target alone
    applies and ``stats["targets_met"]`` is False). Pass ``target_unknown_recall=0`` for a pure
    balanced-accuracy optimum. ``stats``
    holds the chosen point's rates, the unconstrained optimum (``unconstrained``) and the counts.
    """
    pos = [float(s) for s in answerable_scores]
    neg = [float(s) for s in unanswerable_scores]
    if not pos or not neg:
        raise ValueError("best_threshold needs at least one answerable and one unanswerable score")
    if not 0.0 <= target_unknown_recall <= 1.0:
        raise ValueError(f"target_unknown_recall must be within [0, 1] (got {target_unknown_recall})")
    values = sorted(set(pos + neg))
    eps = max(1e-6, 1e-6 * (values[-1] - values[0]))
    candidates = [values[0] - eps]
    candidates += [(a + b) / 2 for a, b in itertools.pairwise(values)]
    candidates.append(values[-1] + eps)
    points = [gate_stats(t, pos, neg) for t in candidates]

    def key(pt: dict[str, float]) -> tuple[float, float, float]:
        return (round(pt["balanced_accuracy"], 12), pt["unknown_recall"], -pt["threshold"])

    unconstrained = max(points, key=key)
    feasible = [pt for pt in points if pt["unknown_recall"] >= target_unknown_recall - 1e-12]
    both = feasible if max_false_unknown is None else [
        pt for pt in feasible if 1.0 - pt["answer_recall"] <= max_false_unknown + 1e-12]
    chosen = max(both or feasible, key=key)  # never empty: the candidate above every score refuses all
    stats: dict[str, Any] = {
        **chosen,
        "target_unknown_recall": target_unknown_recall,
        "max_false_unknown": max_false_unknown,
        "targets_met": bool(both),
        "n_answerable": len(pos),
        "n_unanswerable": len(neg),
        "unconstrained": unconstrained,
    }
    return chosen["threshold"], stats


@dataclass
class QuestionResult:
    """Outcome of one question: rank of the first relevant hit, top score, latency."""

    id: str
    kind: str
    lang: str
    answerable: bool
    rank: int | None
    top_score: float | None
    latency_ms: float
    n_hits: int
    top_source: str | None = None


@dataclass
class RetrievalReport:
    """Metrics overall / per kind / per language, latency and top-score distributions."""

    k: int
    match: str
    overall: dict[str, Any]
    by_kind: dict[str, dict[str, Any]]
    by_lang: dict[str, dict[str, Any]]
    latency_ms: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    gate: dict[str, Any] | None = None
    results: list[QuestionResult] = field(default_factory=list)

    def to_dict(self, include_results: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not include_results:
            d.pop("results")
        return d

    def format_table(self) -> str:
        """A plain-text table of the metrics, latency and score summaries."""
        cols = [c for c in self.overall if c != "n"]
        width = max(len(c) for c in cols) + 2
        lines = [f"{'subset':<14}{'n':>5}" + "".join(f"{c:>{width}}" for c in cols)]

        def row(name: str, m: dict[str, Any]) -> str:
            cells = "".join(f"{'-' if m.get(c) is None else format(m[c], '.3f'):>{width}}" for c in cols)
            return f"{name:<14}{m['n']:>5}" + cells

        lines.append(row("all", self.overall))
        for name, m in self.by_kind.items():
            lines.append(row(f"kind={name}", m))
        for name, m in self.by_lang.items():
            lines.append(row(f"lang={name}", m))
        lat = self.latency_ms
        if lat.get("n"):
            lines.append(
                f"latency ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  mean {lat['mean']:.1f}  "
                f"max {lat['max']:.1f}  (n={lat['n']})"
            )
        for name, s in self.scores.items():
            summ = s["summary"]
            if summ["n"]:
                lines.append(
                    f"top score {name:<12}: n {summ['n']:>4}  p5 {summ['p5']:.3f}  p25 {summ['p25']:.3f}  "
                    f"p50 {summ['p50']:.3f}  p75 {summ['p75']:.3f}  p95 {summ['p95']:.3f}"
                )
        if self.gate:
            g = self.gate
            lines.append(
                f"gate threshold {g['threshold']:.4f}: unknown recall {g['unknown_recall']:.3f}, "
                f"answer recall {g['answer_recall']:.3f}, balanced acc {g['balanced_accuracy']:.3f}"
            )
        return "\n".join(lines)


def evaluate_retrieval(
    search_fn: Callable[[str], Sequence[Hit]],
    items: Sequence[QAItem],
    k: int = 10,
    ks: Iterable[int] = (1, 5, 10),
    match: str = "any",
    target_unknown_recall: float = TARGET_UNKNOWN_RECALL,
    max_false_unknown: float | None = MAX_FALSE_UNKNOWN,
    show_progress: bool = False,
) -> RetrievalReport:
    """Run ``search_fn(question)`` for every item and compute a :class:`RetrievalReport`.

    Ranking metrics use answerable items only (overall, per kind, per language); latency covers all
    questions; ``scores`` holds the top-hit score of every answerable and unanswerable question, and
    ``gate`` the :func:`best_threshold` suggestion when both groups have scores.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)} (got {match!r})")
    ks = tuple(sorted(set(ks)))
    iterator: Iterable[QAItem] = items
    if show_progress:
        from tqdm.auto import tqdm  # lazy: only when asked

        iterator = tqdm(items, desc="eval", unit="q")
    results: list[QuestionResult] = []
    for item in iterator:
        t0 = time.perf_counter()
        hits = list(search_fn(item.question))
        latency_ms = (time.perf_counter() - t0) * 1000.0
        top = hits[:k]
        rank = first_relevant_rank(top, item, k=k, mode=match) if item.answerable else None
        results.append(
            QuestionResult(
                id=item.id,
                kind=item.kind,
                lang=item.lang,
                answerable=item.answerable,
                rank=rank,
                top_score=float(top[0].score) if top else None,
                latency_ms=latency_ms,
                n_hits=len(top),
                top_source=top[0].source if top else None,
            )
        )
    return build_report(results, k=k, ks=ks, match=match, target_unknown_recall=target_unknown_recall,
                        max_false_unknown=max_false_unknown)


def build_report(
    results: Sequence[QuestionResult],
    k: int = 10,
    ks: Iterable[int] = (1, 5, 10),
    match: str = "any",
    target_unknown_recall: float = TARGET_UNKNOWN_RECALL,
    max_false_unknown: float | None = MAX_FALSE_UNKNOWN,
) -> RetrievalReport:
    """Aggregate per-question results into a report (split out so saved results can be re-scored)."""
    ks = tuple(sorted(set(ks)))
    cutoff = min(10, k)
    answerable = [r for r in results if r.answerable]

    def metrics_of(rs: Sequence[QuestionResult]) -> dict[str, Any]:
        return retrieval_metrics([r.rank for r in rs], ks=ks, cutoff=cutoff)

    by_kind = {
        kind: metrics_of([r for r in answerable if r.kind == kind])
        for kind in sorted({r.kind for r in answerable})
    }
    by_lang = {
        lang: metrics_of([r for r in answerable if r.lang == lang])
        for lang in sorted({r.lang for r in answerable})
    }
    lat = [r.latency_ms for r in results]
    lat_summary = summarize(lat)
    latency = {key: lat_summary[key] for key in ("n", "mean", "p50", "p95", "max")}
    pos = [r.top_score for r in results if r.answerable and r.top_score is not None]
    neg = [r.top_score for r in results if not r.answerable and r.top_score is not None]
    scores = {
        "answerable": {"scores": pos, "summary": summarize(pos)},
        "unanswerable": {"scores": neg, "summary": summarize(neg)},
    }
    gate = None
    if pos and neg:
        _, gate = best_threshold(pos, neg, target_unknown_recall=target_unknown_recall,
                                 max_false_unknown=max_false_unknown)
    report = RetrievalReport(
        k=k,
        match=match,
        overall=metrics_of(answerable),
        by_kind=by_kind,
        by_lang=by_lang,
        latency_ms=latency,
        scores=scores,
        gate=gate,
        results=list(results),
    )
    logger.info(
        "retrieval eval: %d questions, recall@%d %s",
        len(results),
        ks[-1],
        report.overall.get(f"recall@{ks[-1]}"),
    )
    return report
