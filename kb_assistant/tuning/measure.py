"""The held-out probes through a knowledge base's real answer path, and the adopt/not-adopt decision.

:func:`ask_probes` asks every probe through a query engine (retrieval -> unknown gate -> prompt ->
generator, answer cache off); :func:`probe_metrics` scores the answers:

* ``facts`` — answerable probes whose answer holds **every** keyword (as ``kb eval answers`` counts
  facts); ``keyword_recall`` the mean share of keywords found;
* ``unknown_f1`` (precision and recall of "unknown", the positive class being the unanswerable probes),
  ``false_unknown`` and ``unknown_on_unanswerable``;
* ``generated_share`` (answers the generator wrote, not quotes) and ``p50_ms`` / ``retrieve_ms``.

:func:`decide`: a tuned configuration is adopted only when facts rose by at least ``min_facts_gain`` (and
by one probe at least) and unknown F1 fell by no more than ``unknown_f1_tolerance``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..evaluation.metrics import percentile
from ..evaluation.text_metrics import keyword_hit
from .heldout import EvalProbe

logger = logging.getLogger(__name__)

#: rows of the before/after table: (metric key, label, scale: 100 for rates shown in %, 1 as is)
TABLE_ROWS = (("facts", "facts %", 100), ("keyword_recall", "keyword recall %", 100),
              ("unknown_f1", "unknown F1 %", 100),
              ("unknown_on_unanswerable", "unknown on unanswerable %", 100),
              ("false_unknown", "false unknown %", 100), ("generated_share", "generated %", 100),
              ("p50_ms", "answer p50 ms", 1))


@dataclass
class ProbeAnswer:
    text: str
    unknown: bool
    mode: str
    ms: float
    retrieve_ms: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ask_probes(engine: Any, probes: Sequence[EvalProbe], *, show_progress: bool = False,
               desc: str = "probes") -> list[ProbeAnswer]:
    """Every probe through ``engine.ask`` (cache off), timed."""
    from tqdm.auto import tqdm

    out = []
    for probe in tqdm(probes, desc=desc, unit="q", disable=not show_progress, leave=False):
        t0 = time.perf_counter()
        answer = engine.ask(probe.question, use_cache=False)
        ms = (time.perf_counter() - t0) * 1000
        out.append(ProbeAnswer(answer.text, bool(answer.unknown), answer.mode, round(ms, 1),
                               round(float(answer.timings.get("retrieve", 0.0)), 1)))
    return out


def _rate(num: float, den: int) -> float | None:
    return round(num / den, 4) if den else None


def probe_metrics(probes: Sequence[EvalProbe], answers: Sequence[ProbeAnswer]) -> dict[str, Any]:
    pairs = list(zip(probes, answers, strict=True))
    ans = [(p, a) for p, a in pairs if p.answerable]
    una = [(p, a) for p, a in pairs if not p.answerable]
    recall = [keyword_hit(a.text, p.keywords) if not a.unknown else 0.0 for p, a in ans]
    tp = sum(a.unknown for _, a in una)
    fp = sum(a.unknown for _, a in ans)
    precision = tp / (tp + fp) if tp + fp else 0.0
    unknown_recall = tp / len(una) if una else 0.0
    f1 = 2 * precision * unknown_recall / (precision + unknown_recall) if precision + unknown_recall else 0.0
    answered = [a for _, a in ans if not a.unknown]
    times = [a.ms for _, a in pairs]
    return {
        "n": len(pairs), "answerable": len(ans), "unanswerable": len(una),
        "facts": _rate(sum(r == 1.0 for r in recall), len(ans)),
        "keyword_recall": _rate(sum(recall), len(ans)),
        "unknown_precision": round(precision, 4), "unknown_recall": round(unknown_recall, 4),
        "unknown_f1": round(f1, 4),
        "unknown_on_unanswerable": _rate(tp, len(una)), "false_unknown": _rate(fp, len(ans)),
        "generated_share": _rate(sum(a.mode == "generated" for a in answered), len(answered)),
        "p50_ms": round(percentile(times, 50), 1) if times else None,
        "retrieve_ms": round(percentile([a.retrieve_ms for a in answers], 50), 1) if answers else None,
    }


def decide(before: dict[str, Any], after: dict[str, Any], *, min_facts_gain: float = 0.0,
           unknown_f1_tolerance: float = 0.05) -> tuple[bool, str]:
    """(adopt?, why) from the before/after probe metrics."""
    n = int(before.get("answerable") or 0)
    facts_b, facts_a = before.get("facts") or 0.0, after.get("facts") or 0.0
    gain = facts_a - facts_b
    one_probe = 1.0 / n if n else 1.0
    facts_txt = f"facts {100 * facts_b:.1f} -> {100 * facts_a:.1f} %"
    f1_b, f1_a = before.get("unknown_f1") or 0.0, after.get("unknown_f1") or 0.0
    f1_txt = f"unknown F1 {100 * f1_b:.1f} -> {100 * f1_a:.1f} %"
    if gain < max(min_facts_gain, one_probe) - 1e-9:
        return False, f"not adopted: {facts_txt} (needs +{100 * max(min_facts_gain, one_probe):.1f} points)"
    if f1_b - f1_a > unknown_f1_tolerance + 1e-9:
        return False, f"not adopted: {f1_txt} (down by more than {100 * unknown_f1_tolerance:.1f} points)"
    return True, f"adopted: {facts_txt}, {f1_txt}"


def format_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [f"{'metric':<28}{'before':>9}{'after':>9}{'delta':>9}"]
    for key, label, scale in TABLE_ROWS:
        b, a = before.get(key), after.get(key)
        if b is None or a is None:
            lines.append(f"{label:<28}{'-':>9}{'-':>9}{'':>9}")
            continue
        fmt = ".0f" if scale == 1 else ".1f"
        lines.append(f"{label:<28}{b * scale:>9{fmt}}{a * scale:>9{fmt}}{(a - b) * scale:>+9{fmt}}")
    return "\n".join(lines)
