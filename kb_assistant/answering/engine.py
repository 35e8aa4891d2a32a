"""Question -> answer: retrieve, gate, extract evidence, generate, check support, cite.

``QueryEngine.ask``: (1) safety: a question with a sensitive word is refused; (2) cache: an LRU keyed by
(normalised question, params, kb_version); (3) retrieve ``k`` hits; the **unknown gate** (fitted, else
``unknown_threshold``) gives the unknown template and the generator is never called; (4) evidence: the
best sentences of the hits by question terms (``prompts.select_context``) form the passages [1]..[n] of a
short prompt; (5) generate (``answer_mode``, ``generate_langs``) and **post-check** (``evidence.grounding``,
``draft_quote_agreement``): a failed draft gives way to the extractive answer, whose sentences are chosen
by the embedder's similarity too (``evidence_dense_weight``); (6) citations: ``[n]`` markers map to hits.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from ..config import ANSWER_MODES, GenerationConfig, QueryConfig
from ..errors import ConfigError, GeneratorUnavailable
from ..evidence import (
    Grounding,
    SentenceScorer,
    grounding,
    is_fragment,
    is_furniture,
    is_instruction,
    support_score,
)
from ..prompts import PromptContext, select_context, unknown_text
from ..safety import AuditLog, SafetyFilter
from ..text import CITATION_RE, detect_lang, split_sentences, strip_citations, terms, truncate_sentences
from ..types import Hit
from .answer import Answer, Prepared, ms

if TYPE_CHECKING:
    from ..gate import Gate
    from .chat import ChatSession
    from .streaming import StreamingAnswer

logger = logging.getLogger(__name__)

SearchFn = Callable[..., list[Hit]]
_GEN_FIELDS = {f.name for f in fields(GenerationConfig) if f.init}
_QUERY_PARAMS = {"k", "groups", "answer_mode", "kb_version", "use_cache"}
#: the label of an extractive answer quoting text in another language than the question's
QUOTE_MARK = {"en": "(quoted from a Chinese document) ", "zh": "（引自英文文档）"}


def _normalise(question: str) -> str:
    return " ".join(question.lower().split()).rstrip("?？!！。. ")


class QueryEngine:
    """Answers questions over a ``search_fn(query, k, groups=...) -> list[Hit]`` (``kb.search`` fits).

    ``generator_factory`` is called (once) only when a question passes the gate and needs generation.
    ``version_fn`` (e.g. ``lambda: kb.version``) keys the answer cache; ``ask(kb_version=...)`` overrides.
    ``generation``: default decoding parameters (``GenerationConfig`` fields) under the ask() params.
    ``sentence_scorer``: similarity of quoted sentences (:func:`kb_assistant.evidence.embedding_scorer`).
    """

    def __init__(self, search_fn: SearchFn, generator_factory: Callable[[], Any] | None = None,
                 config: QueryConfig | None = None, *, safety: SafetyFilter | None = None,
                 audit: AuditLog | None = None, version_fn: Callable[[], Any] | None = None,
                 generation: dict[str, Any] | None = None, gate: Gate | None = None,
                 sentence_scorer: SentenceScorer | None = None) -> None:
        self.search_fn, self.generator_factory = search_fn, generator_factory
        self.sentence_scorer = sentence_scorer
        self.config = config or QueryConfig()
        self.safety, self.audit, self.version_fn, self.gate = safety, audit, version_fn, gate
        self.generation = dict(generation or {})
        GenerationConfig.from_dict(self.generation)  # fail now on a bad value
        self._generator: Any = None
        self._cache: OrderedDict[tuple[Any, ...], Answer] = OrderedDict()
        self._cache_version: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    @property
    def generator(self) -> Any:
        if self._generator is None:
            if self.generator_factory is None:
                raise ConfigError("QueryEngine needs a generator_factory for answer_mode 'auto'/'generate'")
            self._generator = self.generator_factory()
        return self._generator

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _split_params(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        unknown = set(params) - _QUERY_PARAMS - _GEN_FIELDS
        if unknown:
            raise ConfigError(f"unknown ask() parameter(s): {', '.join(sorted(unknown))}; allowed: "
                              f"{', '.join(sorted(_QUERY_PARAMS | _GEN_FIELDS))}")
        return ({k: v for k, v in params.items() if k in _QUERY_PARAMS},
                {k: v for k, v in params.items() if k in _GEN_FIELDS})

    def _finish(self, prep: Prepared, answer: Answer) -> Answer:
        answer.timings = {**prep.timings, **answer.timings, "total": ms(prep.t0)}
        if not answer.cached and not answer.confidence:
            answer.confidence = prep.confidence
        if self.safety is not None and answer.mode in ("generated", "extractive") and not answer.cached:
            answer.text = self.safety.clean_answer(answer.text)
        if prep.cache_key is not None and self.config.cache_size and answer.mode != "refused" \
                and not answer.cached:
            with self._lock:
                self._cache[prep.cache_key] = copy.copy(answer)
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        if self.audit is not None:
            try:
                self.audit.write(prep.question, answer.text, sources=answer.sources, timings=answer.timings,
                                 mode=answer.mode, unknown=answer.unknown, query=prep.query,
                                 cached=answer.cached)
            except OSError as exc:
                logger.warning("audit log write failed: %s", exc)
        return answer

    # ------------------------------------------------------------ stages
    def _prepare(self, question: str, query: str | None, params: dict[str, Any]) -> Prepared:
        t0 = time.perf_counter()
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("question must be a non-empty string")
        qp, gp = self._split_params(params)
        query = query or question
        lang = detect_lang(question)
        prep = Prepared(question, query, lang, t0)
        cfg = self.config
        if self.safety is not None:
            refusal = self.safety.check_question(question, lang) or self.safety.check_question(query, lang)
            if refusal is not None:
                prep.answer = Answer(refusal, unknown=True, mode="refused", lang=lang, question=question,
                                     query=query)
                return prep
        k = int(qp.get("k", cfg.k))
        groups = qp.get("groups")
        mode = qp.get("answer_mode", cfg.answer_mode)
        if mode not in ANSWER_MODES:
            allowed = ", ".join(map(repr, ANSWER_MODES))
            raise ConfigError(f"answer_mode must be one of {allowed}; got {mode!r}")
        gen_kwargs = {"max_new_tokens": cfg.max_new_tokens, "max_sentences": cfg.max_sentences,
                      **self.generation, **gp}
        prep.gen_config = GenerationConfig(**gen_kwargs)
        version = qp["kb_version"] if "kb_version" in qp else (self.version_fn() if self.version_fn else None)
        if qp.get("use_cache", True) and cfg.cache_size:
            with self._lock:
                if version != self._cache_version:
                    self._cache.clear()
                    self._cache_version = version
            # None (trusted caller) and [] (public only) must never share a cache entry
            acl = None if groups is None else tuple(sorted(groups))
            prep.cache_key = (_normalise(query), k, acl, mode, tuple(sorted(gen_kwargs.items())), version)
            with self._lock:
                hit = self._cache.get(prep.cache_key)
                if hit is not None:
                    self._cache.move_to_end(prep.cache_key)
            if hit is not None:
                cached = copy.copy(hit)
                cached.cached, cached.question = True, question
                cached.timings = {}
                prep.answer, prep.cache_key = cached, None
                return prep
        t = time.perf_counter()
        hits = list(self.search_fn(query, k, groups=groups))
        prep.timings["retrieve"] = ms(t)
        ok, confidence = self._gate(query, hits)
        if not ok:
            prep.answer = Answer(unknown_text(lang, cfg.unknown_text), unknown=True, sources=hits,
                                 mode="unknown", lang=lang, question=question, query=query,
                                 confidence=confidence)
            return prep
        prep.confidence = confidence
        prep.hits = hits
        extractive = mode == "extractive" or (mode == "auto" and lang not in cfg.generate_langs)
        # a prompt's evidence is chosen by terms alone (the training data's is: one prompt builder)
        ctx = self._context(prep, dense=extractive)
        if ctx is None:  # hits without usable text
            prep.answer = Answer(unknown_text(lang, cfg.unknown_text), unknown=True, sources=hits,
                                 mode="unknown", lang=lang, question=question, query=query)
            return prep
        self._use(prep, ctx)
        if extractive or (mode == "auto" and self._unreadable(prep)):
            prep.answer = self._extractive(prep) if extractive else self._quote(prep)
            return prep
        counter = self.generator.count_tokens if hasattr(self.generator, "count_tokens") else None
        prep.messages, _ = ctx.messages(max_context_tokens=cfg.max_context_tokens, count_tokens=counter)
        prep.timings["prepare"] = ms(t0) - prep.timings["retrieve"]
        return prep

    def _context(self, prep: Prepared, *, dense: bool) -> PromptContext | None:
        """The evidence of ``prep.hits``: by question terms, and with ``dense`` by the embedder's
        similarity too (``evidence_dense_weight``; the sentences a quoted answer is made of)."""
        cfg = self.config
        dense = dense and self.sentence_scorer is not None and cfg.evidence_dense_weight > 0
        return select_context(prep.query, [h.text for h in prep.hits], lang=prep.lang,
                              evidence_sentences=cfg.evidence_sentences,
                              focus=prep.question if prep.query != prep.question else None,
                              scorer=self.sentence_scorer if dense else None,
                              dense_weight=cfg.evidence_dense_weight if dense else 0.0)

    @staticmethod
    def _use(prep: Prepared, ctx: PromptContext) -> None:
        prep.sources = [prep.hits[p] for p in ctx.order]
        prep.evidence, prep.ev_number = ctx.evidence, ctx.ev_number

    def _quote(self, prep: Prepared, support: float = 0.0) -> Answer:
        """The extractive answer given instead of a draft that failed its checks (none of it shown), its
        sentences chosen by the embedder's similarity too (the prompt's were chosen by terms alone)."""
        ctx = self._quote_context(prep)
        if ctx is None:
            return self._extractive(prep, support)
        quoted = copy.copy(prep)
        self._use(quoted, ctx)
        return self._extractive(quoted, support)

    def _quote_context(self, prep: Prepared) -> PromptContext | None:  # what a quote is made of, once
        if prep.quote_ctx is None and prep.hits:
            prep.quote_ctx = self._context(prep, dense=True)
        return prep.quote_ctx

    def _unreadable(self, prep: Prepared) -> bool:
        """A quote leads with text the generator cannot read (not asked in, not in ``generate_langs``)."""
        ctx = self._quote_context(prep)
        best = ctx.evidence[0].lang if ctx is not None and ctx.evidence else prep.lang
        return best not in (prep.lang, *self.config.generate_langs)

    def _gate(self, query: str, hits: list[Hit]) -> tuple[bool, float]:
        """The unknown gate: the knowledge base's fitted gate when it has one, else the top hit's
        calibrated score against ``unknown_threshold``. Returns (answer?, confidence)."""
        if self.gate is not None:
            ok, p, feats = self.gate.decide(query, hits)
            if not ok:
                logger.info("unknown gate: P(answerable) %.3f below the fitted threshold (%s)", p,
                            {k: round(v, 2) for k, v in feats.items()})
            return ok, p
        top = max((h.score for h in hits), default=None)
        if top is None or top < self.config.unknown_threshold:
            logger.info("unknown gate: top score %s < %.3f", top, self.config.unknown_threshold)
            return False, float(top or 0.0)
        return True, float(top)

    def _extractive(self, prep: Prepared, support: float = 0.0) -> Answer:
        """The best ``extractive_sentences`` evidence sentences, each followed by its passage's [n]
        (sentences of one passage keep their document order and share one marker); the best one is
        widened with its neighbours in the passage up to ``extractive_chars``."""
        picks: list[int] = []
        seen: list[set[str]] = []
        best = max((ev.overlap for ev in prep.evidence), default=0.0)
        for i, ev in enumerate(prep.evidence):
            if len(picks) >= self.config.extractive_sentences:
                break
            ev_terms = set(terms(ev.text))
            if picks and any(ev_terms <= other for other in seen):
                continue  # adds nothing to a sentence already picked
            if picks and ev.overlap < self.config.extractive_min_overlap * best:
                continue  # does not answer the question as the best one does
            picks.append(i)
            seen.append(ev_terms)
        groups: dict[int, dict[int, str]] = {}  # passage number -> {sentence position: text}
        for i in picks:  # passages in the order of their best sentence
            ev = prep.evidence[i]
            groups.setdefault(prep.ev_number[i], {})[ev.position] = ev.text.strip()
        if picks and not self.config.extractive_min_overlap:  # a strict quote is not widened
            self._widen(prep, picks[0], groups)
        sep = "" if prep.lang == "zh" else " "
        parts = [sep.join(t for _, t in sorted(members.items())) + f"{sep}[{n}]"
                 for n, members in groups.items()]
        text = sep.join(parts)
        if groups and detect_lang(text) != prep.lang:  # a quote in another language says so, in the asker's
            text = f"{QUOTE_MARK.get(prep.lang, QUOTE_MARK['en'])}{text}"
        return Answer(text, unknown=False, sources=prep.sources,
                      citations={n: prep.sources[n - 1] for n in groups}, mode="extractive",
                      lang=prep.lang, supported=True, question=prep.question, query=prep.query,
                      support=support)

    def _widen(self, prep: Prepared, pick: int, groups: dict[int, dict[int, str]]) -> None:
        """Add the neighbours of evidence ``pick`` in its passage (following ones first) until the quote
        of that passage reaches ``extractive_chars``; never headings, fragments, TOC lines, instructions,
        nor what precedes a heading (the previous section, the document's title) before the answer."""
        limit = self.config.extractive_chars
        n = prep.ev_number[pick]
        members = groups[n]
        sentences = split_sentences(strip_citations(prep.sources[n - 1].text))
        ev = prep.evidence[pick]
        after, before = ev.position + 1, ev.position - 1
        while sum(len(t) for t in members.values()) < limit and (after < len(sentences) or before >= 0):
            forward = after < len(sentences)
            pos = after if forward else before
            after, before = (after + 1, before) if forward else (after, before - 1)
            sent = sentences[pos].strip()
            if is_furniture(sent) or is_fragment(sent):  # a heading: never reach back across one
                before = before if forward else -1
            elif pos not in members and sent and not is_instruction(sent):
                members[pos] = sent

    def _check_and_cite(self, prep: Prepared, text: str) -> Answer:
        g = self.grounding(prep, text, prep.query)
        support = g.support
        logger.debug("generated (support %.2f, %s): %r", support, g.problems, text)
        if not g.ok:
            logger.info("generated answer not grounded (support %.2f, threshold %.2f; %s): "
                        "using the extractive answer", support, self.config.support_threshold,
                        "; ".join(g.problems) or "low overlap")
            return self._quote(prep, support)
        text, citations = self._cite(prep, text)
        return Answer(text, unknown=False, sources=prep.sources, citations=citations, mode="generated",
                      lang=prep.lang, supported=True, question=prep.question, query=prep.query,
                      support=support)

    def _cite(self, prep: Prepared, text: str, strip_invalid: bool = True) -> tuple[str, dict[int, Hit]]:
        n_sources = len(prep.sources)
        valid = {int(m) for m in CITATION_RE.findall(text) if 1 <= int(m) <= n_sources}
        if strip_invalid:  # a marker beyond the passages is a hallucination
            text = CITATION_RE.sub(lambda m: m.group(0) if int(m.group(1)) in valid else "", text)
            text = re.sub(r"[ \t]{2,}", " ", text).strip()
        if not valid:
            a_terms = set(terms(text))
            scores = [len(a_terms & set(terms(ev.text))) for ev in prep.evidence]
            n = prep.ev_number[max(range(len(scores)), key=lambda i: (scores[i], -i))]
            valid, text = {n}, f"{text} [{n}]"
        return text, {n: prep.sources[n - 1] for n in sorted(valid)}

    # ------------------------------------------------------------ public
    def ask(self, question: str, *, query: str | None = None, **params: Any) -> Answer:
        """Answer ``question``. ``params``: k, groups, answer_mode, kb_version, use_cache and any
        ``GenerationConfig`` field (max_new_tokens, temperature, ...)."""
        prep = self._prepare(question, query, params)
        if prep.answer is not None:
            return self._finish(prep, prep.answer)
        t = time.perf_counter()
        cfg = prep.gen_config
        assert cfg is not None
        try:
            text = self._generate(prep, cfg)
        except GeneratorUnavailable as exc:  # -> the extractive answer
            logger.warning("%s: answering extractively", exc)
            text = ""
        prep.timings["generate"] = prep.timings["first_token"] = ms(t)
        return self._finish(prep, self._check_and_cite(prep, text))

    def _generate(self, prep: Prepared, cfg: GenerationConfig) -> str:
        if cfg.num_beams > 1:
            return self.generator.generate(prep.messages, cfg)
        # stream internally so a drifting answer stops after its first words (as ask_stream does)
        text, checked = "", None
        stream = self.generator.stream(prep.messages, cfg)
        try:
            for piece in stream:
                text += piece
                checked = self._first_words_ok(prep, text) if checked is None else checked
                if checked is False:
                    return ""  # -> the extractive answer
        finally:
            stream.close()
        return truncate_sentences(text, cfg.max_sentences)

    def _first_words_ok(self, prep: Prepared, text: str) -> bool | None:
        """None until the first sentence or ``stream_check_terms`` words the question lacks are there; then
        whether those new words (a restated question is evidence terms too) are grounded: in the evidence
        (``support_threshold``), no invented detail, in what a quote would show (draft_quote_agreement)."""
        first = truncate_sentences(text, 1)
        q_terms = set(terms(prep.query))
        new = [t for t in terms(first) if t not in q_terms]
        if first == text.strip() and len(new) < self.config.stream_check_terms:
            return None
        if not self.grounding(prep, first).ok:
            return False
        if not new:
            return True
        evidence = [ev.text for ev in prep.evidence]
        added = " ".join(new)
        if support_score(added, evidence) < self.config.support_threshold:
            return False
        agreement = self.config.draft_quote_agreement
        ctx = self._quote_context(prep) if agreement else None
        quoted = [ev.text for ev in ctx.evidence[: self.config.extractive_sentences]] if ctx else evidence
        return not agreement or support_score(added, quoted) >= agreement

    def grounding(self, prep: Prepared, text: str, question: str = "") -> Grounding:
        """:func:`kb_assistant.evidence.grounding` of ``text`` against this question's evidence."""
        return grounding(text, [ev.text for ev in prep.evidence], self.config.support_threshold, question)

    def ask_stream(self, question: str, *, query: str | None = None, **params: Any) -> StreamingAnswer:
        """Like :meth:`ask` but returns an iterable of text pieces; ``.answer`` is set once exhausted."""
        from .streaming import StreamingAnswer

        return StreamingAnswer(self, self._prepare(question, query, params))

    def chat(self, max_history_turns: int | None = None) -> ChatSession:
        from .chat import ChatSession

        turns = self.config.max_history_turns if max_history_turns is None else max_history_turns
        return ChatSession(self, max_history_turns=turns)
