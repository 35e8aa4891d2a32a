"""Evidence: the passage sentences that best answer a question, and how well an answer is supported.

A 135M-parameter generator does not reliably copy facts from long passages, so the answer stage
(1) gives it only the few sentences that best match the question and (2) checks that what it wrote
overlaps those sentences; when it drifts, the engine returns the best sentence itself.

Scoring: question terms (words for Latin scripts, jieba words plus single CJK characters for Chinese)
weighted by an IDF computed over the candidate sentences, plus a small bonus for the passage's retrieval
rank; with a :data:`SentenceScorer` (the knowledge base's embedder: :func:`embedding_scorer`) a share
``dense_weight`` of the score is each sentence's embedding similarity to the question, which also ranks
sentences that share no word with it (an English question over Chinese text).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .analysis import fold_plural
from .text import CITATION_RE, detect_lang, split_sentences, terms

logger = logging.getLogger(__name__)

#: ``scorer(question, sentences)``: the similarity of each sentence to the question (higher: closer)
SentenceScorer = Callable[[str, Sequence[str]], Sequence[float]]
#: a similarity at least this share of the best one's is "near-equal" (the language preference applies)
NEAR_EQUAL = 0.8


def embedding_scorer(embedder: Callable[[], Any], cache_size: int = 4096) -> SentenceScorer:
    """A :data:`SentenceScorer` over an embedder (``embedder()`` returns it, loaded on first use): the
    inner product of the question's query vector with each sentence's document vector. With the dual
    MiniLM + USE embedder only its cross-lingual channel (USE) scores: it reads both languages and embeds
    a passage's sentences in 40-80 ms on two cores, where MiniLM takes 290-390 ms. Sentence vectors are
    kept in an LRU of ``cache_size`` (the same passages come back for related questions)."""
    cache: OrderedDict[str, Any] = OrderedDict()
    lock = threading.Lock()

    def score(question: str, sentences: Sequence[str]) -> list[float]:
        import numpy as np

        emb = embedder()
        emb = getattr(emb, "second", emb)  # DualEmbedder: the cross-lingual channel
        with lock:
            known = {s: cache[s] for s in sentences if s in cache}
            for text in known:
                cache.move_to_end(text)
        missing = [s for s in dict.fromkeys(sentences) if s not in known]
        if missing:
            fresh = dict(zip(missing, emb.embed_documents(missing), strict=True))
            known.update(fresh)
            with lock:
                cache.update(fresh)
                while len(cache) > cache_size:
                    cache.popitem(last=False)
        mat = np.stack([known[s] for s in sentences])
        return (mat @ emb.embed_query(question)).tolist()

    return score


@dataclass
class Evidence:
    """One evidence sentence. ``passage`` is the 0-based index of the hit it comes from; ``overlap`` the
    IDF-weighted share of the question's terms it holds."""

    text: str
    passage: int
    score: float
    position: int = 0
    overlap: float = 0.0
    lang: str = "en"


# table-of-contents lines: dot leaders then a page number ("1.1 Introduction . . . . 3", "…… 12")
_TOC_RE = re.compile(r"(?:\.\s?){4,}\s*\d*\s*$|[…·]{2,}\s*\d+\s*$")
_WORD_RE = re.compile(r"[^\W\d_]{2,}")  # words of two letters or more
# headings: a section number ("5.2.1", "5.2.1.", "第3章") then a short title without an end mark
_HEADING_RE = re.compile(r"^(?:\d+(?:\.\d+)+\.?|\d+\.|第[0-9一二三四五六七八九十百]+[章节部分])\s*\S")
_END_MARK_RE = re.compile(r"[.!?;:。！？；：)）\]」』\"'”]\s*(?:\[\d+\])?$")
# text written to steer an assistant rather than to inform a reader (prompt injection): each pattern needs a
# sign that the assistant is addressed (an AI word, "every question ... the answer is", a chat-template
# token), so that policy prose ("support must respond within 4 hours", "for every question about payroll,
# contact HR", "you are now connected") is never mistaken for one (tests/test_injection.py holds both)
_AI = r"(?:ai|a\.i\.|llms?|(?:large )?language models?|gpt[-\w.]*|chatgpt|ai assistants?)"
_QUESTIONS = r"(?:questions?|quer(?:y|ies)|prompts?|requests?)"
_INSTRUCTION_PATTERNS = (
    # overriding what came before
    r"\b(?:ignore|disregard|forget|override)\b[^.!?。]{0,40}\b(?:previous|prior|above|earlier|preceding|your|"
    r"all|any|these|the)\b[^.!?。]{0,20}\b(?:instructions?|prompts?|rules|directions|guidelines|context)\b",
    r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+)?(?:the\s+)?(?:above|previous|prior|preceding)"
    r"(?=\s*(?:and\b|,|;|:|\.|$))",
    # notes addressed to the assistant, or telling it what it is
    r"\b(?:note|notice|message|instructions?|attention|reminder)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?"
    rf"(?:{_AI}|assistants?|chatbots?|bots?)\b",
    rf"\bif you are an? (?:{_AI}|assistant|chatbot|bot|model)\b",
    rf"\byou are (?:now\s+)?(?:an?\s+)?(?:{_AI}|assistant|chatbot|claude|dan)\b",
    r"\byou are now (?:in|a|an)\b[^.!?]{0,30}\bmode\b",
    rf"\b{_AI}\b[^.!?。]{{0,60}}\b(?:must|should|shall|will|need to|have to)\s+(?:always\s+)?"
    r"(?:answer|respond|reply|say|output|print|write|tell)\b",
    r"\bassistants?\s+(?:must|should|shall|will|need to|has to|have to)\s+(?:always\s+)?(?:say|output|print|"
    r"claim|state|answer that)\b",
    # one answer for every question
    rf"\b(?:for|to)\s+(?:every|any|all|each)\s+{_QUESTIONS}\b[^.!?。]{{0,20}}\b(?:the\s+)?answers?\s+"
    r"(?:is|are|should be|must be|will be)\b",
    rf"\banswers?\s+(?:to|for)\s+(?:every|any|all|each)\s+{_QUESTIONS}\b[^.!?。]{{0,40}}\b(?:is|are)\b",
    rf"\b(?:answer|respond|reply)\s+(?:to\s+)?(?:every|all|any|each)\s+{_QUESTIONS}\s+(?:only\s+)?with\b",
    r"\b(?:whatever|no matter what)\s+the\s+user\s+(?:asks|says|wants|types|writes)\b",
    # chat-template tokens and prompt extraction
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|\[/?INST\]|<</?SYS>>",
    r"^\s*#{2,}\s*(?:instruction|system|response)\b|\bsystem prompt\s*[:=]",
    r"\b(?:reveal|print|show|repeat|output)\b[^.!?]{0,20}\b(?:system prompt|your instructions)\b",
    # the same in Chinese
    r"(?:忽略|无视|忘记|忘掉)[^。！？，]{0,8}(?:指令|指示|提示词|规则|设定)",
    r"(?:所有|任何|每个|一切)的?问题的?(?:答案|回答)(?:都|均)?(?:是|为)",
    r"无论用户(?:问|说|输入)(?:什么|啥)|(?:对|就)(?:所有|任何|每个)问题都?(?:回答|回复)|系统提示词",
)
_INSTRUCTION_RE = re.compile("|".join(f"(?:{p})" for p in _INSTRUCTION_PATTERNS),
                             re.IGNORECASE | re.MULTILINE)


def is_furniture(sentence: str) -> bool:
    """A table-of-contents line, a numbered heading (a FAQ's numbered question too: "12.5 How do I report
    a bug?"), or a title in capitals ("HOW DO I REPORT A BUG IN DEBIAN?", a running title; "DO NOT UNPLUG
    IT." is a sentence): not a sentence a reader would quote."""
    s = CITATION_RE.sub("", sentence).strip()
    if _TOC_RE.search(s):
        return True
    en = detect_lang(s) == "en"
    words = len(s.split()) if en else len(s) // 3
    if (en and 2 <= len(_WORD_RE.findall(s)) <= 12 and s.upper() == s
            and (s.endswith("?") or not _END_MARK_RE.search(s))):  # a warning in capitals is kept
        return True
    if not _HEADING_RE.match(s):
        return False
    return (words <= 12 and not _END_MARK_RE.search(s)) or (words <= 20 and s.endswith(("?", "？")))


def is_fragment(sentence: str) -> bool:
    """A title-like fragment (three words or fewer; five CJK characters or fewer): a heading without a
    section number ("Leave policy."), never worth quoting beside a real sentence."""
    s = CITATION_RE.sub("", sentence).strip()
    return len(_WORD_RE.findall(s)) <= 3 if detect_lang(s) == "en" else len(s) <= 5


def is_instruction(sentence: str) -> bool:
    """Text that addresses the assistant ("ignore previous instructions", "for every question the answer
    is ..."): never quoted as evidence, whatever its overlap with the question."""
    return bool(_INSTRUCTION_RE.search(sentence))


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
    lang: str | None = None,
    other_lang_factor: float = 0.85,
    scorer: SentenceScorer | None = None,
    dense_weight: float = 0.0,
) -> list[Evidence]:
    """Return up to ``max_sentences`` best sentences (best first) from ``passages`` (ranked best first).

    score = weighted fraction of question terms present in the sentence (IDF over all candidate
    sentences) + ``rank_weight`` / (1 + passage rank), times ``other_lang_factor`` for a sentence not in
    the question's language ``lang`` (when given). Terms of ``focus`` (the user's own words when
    ``question`` is a rewritten follow-up) weigh ``focus_weight`` times more. Headings, table-of-contents
    lines and text addressed to the assistant are never evidence (:func:`is_furniture`,
    :func:`is_instruction`). With ``scorer`` and ``dense_weight`` > 0 the term part weighs
    ``1 - dense_weight`` and the sentence's similarity to the question (relative to the best
    candidate's) ``dense_weight`` (none for sentences not in ``lang`` when a sentence in ``lang`` is
    near-equal to the best: :data:`NEAR_EQUAL`); a sentence not in ``lang``, which cannot share the
    question's words, matches by that similarity alone when it is higher. Sentences without a question
    term stay candidates; without a scorer, such sentences are dropped, and when nothing
    overlaps the first usable sentence of the top passage is returned. English plurals are folded
    (``files`` matches ``file``).
    """
    q_terms = _match_terms(question)
    candidates: list[tuple[int, int, str, set[str]]] = []
    for p_idx, passage in enumerate(passages):
        for s_idx, sent in enumerate(split_sentences(passage)):
            if len(CITATION_RE.sub("", sent).strip()) < 2 or is_furniture(sent) or is_instruction(sent):
                continue
            candidates.append((p_idx, s_idx, sent, _match_terms(sent)))
    if not candidates:
        return []
    n = len(candidates)
    df: Counter[str] = Counter()
    for *_, sent_terms in candidates:
        df.update(sent_terms & q_terms)
    focus_terms = _match_terms(focus) if focus else set()
    idf = {t: (math.log(1.0 + n / (1.0 + df[t])) + 0.1) * (focus_weight if t in focus_terms else 1.0)
           for t in q_terms}
    total = sum(idf.values()) or 1.0
    langs = [detect_lang(c[2]) for c in candidates]
    dense = _relative_similarity(scorer, question, [c[2] for c in candidates]) if dense_weight > 0 else None
    if dense is not None and lang is not None:
        # a cross-lingual embedder finds the same fact in the other language's twin as close: when a
        # sentence in the question's language is nearly as similar as the best, the sentences of other
        # languages compete on their terms alone (answers in the asker's language among near-equals)
        own = max((d for d, s_lang in zip(dense, langs, strict=True) if s_lang == lang), default=0.0)
        if own >= NEAR_EQUAL:
            dense = [d if s_lang == lang else 0.0 for d, s_lang in zip(dense, langs, strict=True)]
    scored: list[Evidence] = []
    for i, (p_idx, s_idx, sent, sent_terms) in enumerate(candidates):
        overlap = sum(idf[t] for t in q_terms & sent_terms) / total
        if dense is None and overlap <= min_overlap and q_terms:
            continue
        # mild length prior: very short fragments ("Yes.") are rarely an answer
        length_factor = min(1.0, 0.5 + len(sent) / 80.0)
        match = overlap if dense is None else (1 - dense_weight) * overlap + dense_weight * dense[i]
        s_lang = langs[i]
        if dense is not None and lang is not None and s_lang != lang:
            match = max(match, dense[i])  # shares no word with the question by construction: meaning alone
        score = match * length_factor + rank_weight / (1 + p_idx)
        if lang is not None and s_lang != lang:
            score *= other_lang_factor
        scored.append(Evidence(sent, p_idx, round(score, 4), s_idx, round(overlap, 4), s_lang))
    if not scored:
        p_idx, s_idx, sent, _ = candidates[0]
        return [Evidence(sent, p_idx, 0.0, s_idx, 0.0, langs[0])]
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


def _match_terms(text: str) -> set[str]:
    """The terms by which a sentence matches a question: :func:`~kb_assistant.text.terms`, English plurals
    folded as the keyword index folds them (``packages`` matches ``package``)."""
    return {fold_plural(t) for t in terms(text)}


def _relative_similarity(scorer: SentenceScorer | None, question: str,
                         sentences: list[str]) -> list[float] | None:
    """Each sentence's similarity to ``question`` over the best one's (0..1); None without a scorer or
    when it fails (the term score alone is used then)."""
    if scorer is None:
        return None
    try:
        sims = [max(0.0, float(x)) for x in scorer(question, sentences)]
    except Exception as exc:  # noqa: BLE001 - evidence must not fail because the embedder did
        logger.warning("sentence similarity unavailable (%s): term overlap only", exc)
        return None
    top = max(sims, default=0.0)
    return [x / top for x in sims] if top > 0 else [0.0] * len(sims)


def support_score(answer: str, evidence: Sequence[str]) -> float:
    """Fraction of the answer's content terms found in the evidence sentences (0..1).

    Citation markers are ignored. An answer with no content terms scores 0 (nothing to support).
    """
    a_terms = terms(CITATION_RE.sub(" ", answer))
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
    a_terms = terms(CITATION_RE.sub(" ", answer))
    reasons = [f"'{t}' not in evidence" for t in dict.fromkeys(a_terms)
               if _IDENT_RE.search(t) and t not in pool and t not in q_terms]
    if question and a_terms and not any(t in pool and t not in q_terms for t in a_terms):
        reasons.append("answer only repeats the question")
    return reasons


@dataclass
class Grounding:
    """Whether a generated text is grounded in the evidence: ``ok``, its ``support`` and the problems."""

    ok: bool
    support: float
    problems: list[str]


def grounding(text: str, evidence: Sequence[str], threshold: float, question: str = "") -> Grounding:
    """The one grounding rule of the answer stage: non-empty, at least ``threshold`` of its terms in the
    evidence (:func:`support_score`) and no unsupported detail (:func:`unsupported_details`, which with
    ``question`` also rejects an answer that only echoes the question)."""
    support = support_score(text, evidence)
    problems = unsupported_details(text, evidence, question)
    return Grounding(bool(text.strip()) and support >= threshold and not problems, support, problems)
