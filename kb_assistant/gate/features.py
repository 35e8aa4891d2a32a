"""What the unknown gate looks at: signals of one question and its hits that mean the same in every
knowledge base (relative and lexical, not raw scores whose scale depends on the corpus).

All features are in [0, 1]:

``dense_top``   best dense cosine among the hits;
``dense_gap``   how much the best hit stands out from the others (top minus the median cosine);
``bm25_top``    best BM25 score over the query's maximum possible score (query-length free);
``coverage``    weighted share of the query's content units found in the best three hits (title and
                heading included); units are Latin terms (weighted by IDF) and Han characters (so the
                word segmentation of a Chinese question does not matter);
``covered_top`` the same for the best hit alone;
``absent``      weighted share of the query's units that no chunk of the knowledge base contains;
``absent_name`` the same for the query's *names* only (capitalised or ALL-CAPS words, identifiers with
                digits, ``_``, ``.`` or ``::``, and CJK words with a character the documents never use):
                a question about something the documents never mention, while a user's own wording for
                a documented subject misses only common words;
``lang_match``  share of the best three hits written in the question's language;
``xling_top``   best cosine of the cross-lingual channel (``embedding.cross_lingual``) among the hits: the
                one dense signal that reads a Chinese question, and an English one over Chinese text
                (0 in a knowledge base without that channel).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..analysis import analyze
from ..text import HAN_RE, detect_lang
from ..types import Hit

FEATURES = ("dense_top", "dense_gap", "bm25_top", "coverage", "covered_top", "absent", "absent_name",
            "lang_match", "xling_top")


class TermStats(Protocol):
    """The vocabulary statistics of a knowledge base (its BM25 index)."""

    vocab: dict[str, int]
    ids: np.ndarray

    def doc_freq(self, tid: int) -> int: ...

    def idf(self, term_ids: np.ndarray) -> np.ndarray: ...


_NAME_RE = re.compile(r"(?<![\w.-])([A-Za-z][\w.+:-]*[A-Za-z0-9+])")
_CJK_WORD_RE = re.compile(r"[\u3400-\u9fff]{2,}")


def _vocab_chars(stats: TermStats) -> set[str]:
    """Every character of the vocabulary (cached on the stats object while its vocabulary is unchanged)."""
    key = (id(stats.vocab), len(stats.vocab))
    cached = getattr(stats, "_kb_gate_chars", None)
    if cached is None or cached[0] != key:
        cached = (key, set("".join(stats.vocab)))
        with contextlib.suppress(AttributeError):
            stats._kb_gate_chars = cached  # type: ignore[attr-defined]
    return cached[1]


def name_terms(question: str, stats: TermStats) -> list[str]:
    """The analyzed terms of the question's names (see ``absent_name``), known or not."""
    out: list[str] = []
    words = _NAME_RE.findall(question)
    for i, word in enumerate(words):
        first_word = i == 0 and question.lstrip().startswith(word)
        capital = any(c.isupper() for c in word[1:]) or (word[0].isupper() and not first_word)
        if capital or any(c.isdigit() for c in word) or any(c in word for c in "_.:"):
            out.extend(analyze(word)[:1])
    chars = _vocab_chars(stats)
    for run in _CJK_WORD_RE.findall(question):
        for word in analyze(run):
            if len(word) >= 2 and any(c not in chars for c in word):
                out.append(word)
    return list(dict.fromkeys(out))


def _hit_text(hit: Hit) -> str:
    meta = hit.metadata
    head = " ".join(str(meta[k]) for k in ("title", "heading") if meta.get(k))
    return f"{head}\n{hit.text}" if head else hit.text


def _hit_terms(hit: Hit) -> set[str]:
    return set(analyze(_hit_text(hit)))


#: characters too common in Chinese to carry a question's subject
_CJK_STOP_CHARS = frozenset("的了是在和与及或吗呢吧啊么什怎如何哪些个多少几谁为请问我你他她它们这那"
                            "有没一可以能会要把被对从中上下其就都也还又很该用时后前到给让将")


def _units(query: str, stats: TermStats) -> dict[str, float]:
    """The query's content units and their weights: Latin terms by IDF (mean 1), and each distinct Han
    character (weight 1): characters, not words, so that the segmentation of a question never decides
    whether its subject is in the documents."""
    n_docs = max(len(stats.ids), 1)
    absent_idf = float(np.log1p((n_docs + 0.5) / 0.5))
    latin: dict[str, float] = {}
    for t in dict.fromkeys(analyze(query)):
        if HAN_RE.search(t):
            continue
        tid = stats.vocab.get(t)
        known = tid is not None and stats.doc_freq(tid) > 0
        latin[t] = float(stats.idf(np.asarray([tid]))[0]) if known else absent_idf
    if latin:
        mean = sum(latin.values()) / len(latin)
        latin = {t: w / mean for t, w in latin.items()}
    chars = {c: 1.0 for c in dict.fromkeys(HAN_RE.findall(query)) if c not in _CJK_STOP_CHARS}
    return {**latin, **chars}


def _absent(unit: str, stats: TermStats) -> bool:
    if len(unit) == 1 and HAN_RE.match(unit):
        return unit not in _vocab_chars(stats)
    return stats.vocab.get(unit) is None or stats.doc_freq(stats.vocab[unit]) == 0


def _covered(unit: str, hit_terms: set[str], hit_text: str) -> bool:
    return unit in hit_text if len(unit) == 1 and HAN_RE.match(unit) else unit in hit_terms


def gate_features(query: str, hits: Sequence[Hit], stats: TermStats) -> dict[str, float]:
    """The :data:`FEATURES` of ``query`` and its ranked ``hits``."""
    out = dict.fromkeys(FEATURES, 0.0)
    weights = _units(query, stats)
    total = sum(weights.values())
    absent = {u for u in weights if _absent(u, stats)}
    if total > 0:
        out["absent"] = sum(weights[u] for u in absent) / total
        names = set(name_terms(query, stats))
        out["absent_name"] = sum(w for u, w in weights.items() if u in absent and (
            u in names or any(u in n for n in names if HAN_RE.match(n)))) / total
    if not hits:
        return out
    dense = np.asarray([float(h.metadata.get("dense_score", 0.0)) for h in hits])
    out["dense_top"] = float(np.clip(dense.max(), 0.0, 1.0))
    out["dense_gap"] = float(np.clip(dense.max() - np.median(dense), 0.0, 1.0)) if len(dense) > 1 else 0.0
    out["bm25_top"] = float(np.clip(max(float(h.metadata.get("bm25_norm", 0.0)) for h in hits), 0.0, 1.0))
    out["xling_top"] = float(np.clip(max(float(h.metadata.get("xling_score", 0.0)) for h in hits), 0.0, 1.0))
    if total > 0:
        top = [(_hit_terms(h), _hit_text(h)) for h in hits[:3]]
        out["coverage"] = sum(w for u, w in weights.items() if any(_covered(u, t, x) for t, x in top)) / total
        out["covered_top"] = sum(w for u, w in weights.items() if _covered(u, *top[0])) / total
    qlang = detect_lang(query)
    langs = [h.metadata.get("lang") or detect_lang(h.text) for h in hits[:3]]
    out["lang_match"] = sum(1.0 for lang in langs if lang == qlang) / len(langs)
    return out


def feature_matrix(rows: Sequence[dict[str, Any]], names: Sequence[str] = FEATURES) -> np.ndarray:
    """Stack feature dicts into an (n, len(names)) float matrix."""
    return np.asarray([[float(r[n]) for n in names] for r in rows], dtype=np.float64).reshape(-1, len(names))
