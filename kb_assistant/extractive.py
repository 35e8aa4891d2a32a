"""Extractive anchor: find the passage sentences that best answer a question, and check support.

A 135M-parameter generator does not reliably copy facts from long passages, so the answer stage
(1) gives it only the few sentences that best match the question and (2) checks that what it wrote
overlaps those sentences; when it drifts, the engine returns the best sentence itself.

Scoring is lexical and cheap (no model): question terms (words for Latin scripts, jieba words plus
single CJK characters for Chinese) weighted by an IDF computed over the candidate sentences, plus a
small bonus for the passage's retrieval rank.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_RUN_RE = re.compile(f"[{_CJK}]+")
_WORD_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
# sentence ends: Chinese 。！？；… (no space needed) or Latin .!? followed by space/end; also line breaks
_SENT_SPLIT_RE = re.compile(r"(?<=[。！？；!?])\s*|(?<=[.;])\s+(?=[A-Z0-9\"'(\[\u4e00-\u9fff])|\n{1,}")
_CITE_RE = re.compile(r"\[\d+\]")
# a sentence end followed by the start of the next sentence (so trailing citations "[1]" are kept)
SENTENCE_END_RE = re.compile(r"(?:[.!?](?:\s*\[\d+\])*\s+|[。！？](?:\s*\[\d+\])*\s*)(?=[^\s\[])")

_EN_STOP = (
    """a an the of to in on at for by with from as is are was were be been being am do does did
    what which who whom whose when where why how that this these those it its they them their there
    and or but if then so not no yes can could should would will shall may might must i you he she we
    me my your our his her us about into over under than too very just also any some all each more most
    other such only own same s t don doesn isn aren wasn weren has have had having tell please know
    many much get gets got"""
)
EN_STOPWORDS = frozenset(_EN_STOP.split())
_ZH_STOP = (
    "的 了 是 在 和 与 及 或 吗 呢 吧 啊 么 什么 怎么 如何 哪 哪些 哪个 多少 几 谁 为什么 请问 请 "
    "我 你 他 她 它 我们 你们 他们 这 那 这个 那个 有 没有 一个 可以 能 会 要 把 被 对 从 中 上 下 为 "
    "吗？ 呀 嘛 就 都 也 还 又 很 该 其"
)
ZH_STOPWORDS = frozenset(_ZH_STOP.split())


def is_cjk(text: str) -> bool:
    """True when CJK ideographs make up at least 20% of the letters of ``text``."""
    cjk = len(_CJK_RE.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return cjk > 0 and cjk >= 0.2 * (cjk + latin / 4)


def split_sentences(text: str, *, max_chars: int = 400) -> list[str]:
    """Split English and Chinese text into sentences; over-long pieces are cut at ``max_chars``."""
    out: list[str] = []
    for piece in _SENT_SPLIT_RE.split(text or ""):
        piece = piece.strip()
        while len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            out.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if piece:
            out.append(piece)
    return out


def _jieba_words(text: str) -> list[str]:
    try:
        import jieba  # lazy: jieba builds its dictionary on first use (~1 s)

        jieba.setLogLevel(logging.WARNING)
        return [w for w in jieba.lcut(text) if w.strip()]
    except ImportError:  # pragma: no cover - jieba is a dependency
        return []


def terms(text: str) -> list[str]:
    """Content terms of ``text``: lowercase Latin words and, for CJK runs, jieba words + characters."""
    low = (text or "").lower()
    out = [w for w in _WORD_RE.findall(low) if w not in EN_STOPWORDS]
    for run in _CJK_RUN_RE.findall(low):
        words = _jieba_words(run) if len(run) > 1 else [run]
        out.extend(w for w in words if w not in ZH_STOPWORDS and len(w) > 1)
        out.extend(ch for ch in run if ch not in ZH_STOPWORDS)
    return out


@dataclass
class Evidence:
    """One evidence sentence. ``passage`` is the 0-based index of the hit it comes from."""

    text: str
    passage: int
    score: float
    position: int = 0


def select_evidence(
    question: str,
    passages: Sequence[str],
    *,
    max_sentences: int = 3,
    per_passage: int = 2,
    rank_weight: float = 0.3,
    min_overlap: float = 0.0,
    focus: str | None = None,
    focus_weight: float = 3.0,
) -> list[Evidence]:
    """Return up to ``max_sentences`` best sentences (best first) from ``passages`` (ranked best first).

    score = weighted fraction of question terms present in the sentence (IDF over all candidate
    sentences) + ``rank_weight`` / (1 + passage rank). Terms of ``focus`` (the user's own words when
    ``question`` is a rewritten follow-up) weigh ``focus_weight`` times more. Sentences with no term
    overlap are dropped; when nothing overlaps, the first sentence of the top passage is returned.
    """
    q_terms = set(terms(question))
    candidates: list[tuple[int, int, str, set[str]]] = []
    for p_idx, passage in enumerate(passages):
        for s_idx, sent in enumerate(split_sentences(passage)):
            if len(_CITE_RE.sub("", sent).strip()) < 2:
                continue
            candidates.append((p_idx, s_idx, sent, set(terms(sent))))
    if not candidates:
        return []
    n = len(candidates)
    df: Counter[str] = Counter()
    for *_, sent_terms in candidates:
        df.update(sent_terms & q_terms)
    focus_terms = set(terms(focus)) if focus else set()
    idf = {t: (math.log(1.0 + n / (1.0 + df[t])) + 0.1) * (focus_weight if t in focus_terms else 1.0)
           for t in q_terms}
    total = sum(idf.values()) or 1.0
    scored: list[Evidence] = []
    for p_idx, s_idx, sent, sent_terms in candidates:
        overlap = sum(idf[t] for t in q_terms & sent_terms) / total
        if overlap <= min_overlap and q_terms:
            continue
        # mild length prior: very short fragments ("Yes.") are rarely an answer
        length_factor = min(1.0, 0.5 + len(sent) / 80.0)
        score = overlap * length_factor + rank_weight / (1 + p_idx)
        scored.append(Evidence(sent, p_idx, round(score, 4), s_idx))
    if not scored:
        p_idx, s_idx, sent, _ = candidates[0]
        return [Evidence(sent, p_idx, 0.0, s_idx)]
    scored.sort(key=lambda e: (-e.score, e.passage, e.position))
    out: list[Evidence] = []
    per: Counter[int] = Counter()
    seen: set[str] = set()
    for ev in scored:
        key = ev.text.strip().lower()
        if per[ev.passage] >= per_passage or key in seen:
            continue
        out.append(ev)
        per[ev.passage] += 1
        seen.add(key)
        if len(out) >= max_sentences:
            break
    return out


def support_score(answer: str, evidence: Sequence[str]) -> float:
    """Fraction of the answer's content terms found in the evidence sentences (0..1).

    Citation markers are ignored. An answer with no content terms scores 0 (nothing to support).
    """
    a_terms = terms(_CITE_RE.sub(" ", answer))
    if not a_terms:
        return 0.0
    pool: set[str] = set()
    for sent in evidence:
        pool.update(terms(sent))
    return sum(1 for t in a_terms if t in pool) / len(a_terms)


_IDENT_RE = re.compile(r"\d|[a-z][._-][a-z0-9]|[._-]\d")


def unsupported_details(answer: str, evidence: Sequence[str], question: str = "") -> list[str]:
    """Reasons why ``answer`` is not grounded in ``evidence`` (empty list: grounded).

    * a number or identifier (a term with a digit, or with an inner ``.``/``-``/``_``: versions, hosts,
      codes) that appears in neither the evidence nor the question: a hallucinated fact;
    * when ``question`` is given: no evidence term beyond the question's own (the answer only echoes it).
    """
    pool: set[str] = set()
    for sent in evidence:
        pool.update(terms(sent))
    q_terms = set(terms(question)) if question else set()
    a_terms = terms(_CITE_RE.sub(" ", answer))
    reasons = [f"'{t}' not in evidence" for t in dict.fromkeys(a_terms)
               if _IDENT_RE.search(t) and t not in pool and t not in q_terms]
    if question and a_terms and not any(t in pool and t not in q_terms for t in a_terms):
        reasons.append("answer only repeats the question")
    return reasons


def strip_citations(text: str) -> str:
    """Remove ``[n]`` markers (line breaks are kept: they separate sentences)."""
    text = re.sub(r"[ \t]*\[\d+\]", "", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def truncate_sentences(text: str, max_sentences: int | None) -> str:
    """Keep the first ``max_sentences`` sentences of ``text`` (with their trailing citations)."""
    if not max_sentences:
        return text.strip()
    for i, m in enumerate(SENTENCE_END_RE.finditer(text), start=1):
        if i == max_sentences:
            return text[: m.end()].strip()
    return text.strip()
