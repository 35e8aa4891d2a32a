"""Fine-tuning data: retrieval-aware (RAFT-style) examples made from a knowledge base.

KB-derived examples are built with the query engine's own prompt functions (:func:`engine_context`
calls :mod:`kb_assistant.prompts`): retrieved chunks -> evidence sentences -> numbered passages, so
training and serving prompts match. The example format itself is :mod:`kb_assistant.finetune.examples`.

For a sampled chunk and a template question whose answer is one of its sentences, the context is the
chunk plus retrieved distractor chunks (gold first, as retrieval usually ranks it, or at a random
position) and the target is that sentence, then the rest of the gold passage, with its ``[n]``
citation; the same question over passages retrieved for another question (or, as hard negatives, its
own retrieval without the gold chunk) is an "unknown" example whose target is the unknown template in
the question's language.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..evaluation.metrics import normalize_for_match
from ..evidence import Evidence, support_score, unsupported_details
from ..prompts import TokenCounter, build_messages, select_context, unknown_text
from ..settings import Settings, setting
from ..text import detect_lang, split_sentences, terms
from .examples import TrainExample
from .templates import NAME_SKIP, questions_for

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ the query engine's prompt
def engine_context(question: str, texts: Sequence[str], *, lang: str | None = None,
                   evidence_sentences: int = 3, max_context_tokens: int = 256,
                   count_tokens: TokenCounter | None = None,
                   ) -> tuple[list[dict[str, str]], list[int], list[Evidence], list[str]]:
    """The prompt the query engine builds for ``question`` over ranked chunk ``texts`` — built by the
    same functions (:func:`kb_assistant.prompts.select_context` and ``PromptContext.messages``).

    Returns (messages, passage order (chunk indices), evidence, passage texts as fitted in the prompt).
    """
    ctx = select_context(question, texts, lang=lang, evidence_sentences=evidence_sentences)
    if ctx is None:
        messages, _ = build_messages(question, [], lang=lang or detect_lang(question),
                                     max_context_tokens=max_context_tokens, count_tokens=count_tokens)
        return messages, [], [], []
    messages, n = ctx.messages(max_context_tokens=max_context_tokens, count_tokens=count_tokens)
    return messages, ctx.order[:n], ctx.evidence, ctx.passages[:n]


# ------------------------------------------------------------------ KB-derived (RAFT-style) data
@dataclass
class DataGenConfig(Settings):
    """Settings of :func:`generate_examples` (``n`` examples, ``unknown_fraction`` of them "unknown")."""

    n: int = setting(300, lo=1, hi=1_000_000, doc="examples to generate")
    unknown_fraction: float = setting(0.12, lo=0.0, hi=0.9, doc="share of examples whose passages lack the "
                                                                "answer (target: unknown)")
    k: int = setting(5, lo=2, hi=50, doc="passages per example (the answering one among distractors)")
    seed: int = setting(0, doc="random seed")
    per_chunk: int = setting(2, lo=1, hi=20, doc="examples drawn from one chunk at most")
    evidence_sentences: int = setting(3, lo=1, hi=20, doc="as `[query] evidence_sentences` (prompts match "
                                                          "the query engine's)")
    max_context_tokens: int = setting(256, lo=32, hi=32_768, doc="as `[query] max_context_tokens`")
    min_answer_chars: int = setting(25, doc="shortest target answer")
    max_answer_chars: int = setting(260, doc="longest target answer")
    llm_question_fraction: float = setting(0.0, lo=0.0, hi=1.0, doc="fraction of questions written by the "
                                                                    "generator instead of templates (0: "
                                                                    "templates only)")
    gold_first_fraction: float = setting(0.8, lo=0.0, hi=1.0,
                                         doc="share of answer examples with the gold passage first, as "
                                             "retrieval usually ranks it (the rest: uniform position); 0 = "
                                             "always uniform (pure RAFT)")
    answer_span: str = setting("passage", choices=("sentence", "passage"),
                               doc="what the answer target quotes: `sentence` (the sentence the question was "
                                   "made from) or `passage` (that sentence first, then the other sentences "
                                   "of the gold passage as the prompt shows them)")
    skip_names: list[str] = setting(factory=list, doc="ALL-CAPS words that are labels in your documents "
                                                      "(sidebar titles such as `GOING FURTHER`): never asked "
                                                      "for by cloze questions")
    unrelated_unknown_fraction: float = setting(1.0, lo=0.0, hi=1.0,
                                                doc="share of unknown examples whose passages were retrieved "
                                                    "for another chunk's question (like an out-of-scope "
                                                    "question); the rest are hard negatives: the question's "
                                                    "own retrieval with the gold chunk removed")


def _contains_any(text: str, needles: Sequence[str]) -> bool:
    norm = normalize_for_match(text)
    return any(n in norm for n in needles)


def _needles(evidence: Sequence[str]) -> list[str]:
    """Normalised evidence plus its head and tail (an evidence may straddle two chunks)."""
    out: set[str] = set()
    for ev in evidence:
        e = normalize_for_match(ev)
        if not e:
            continue
        out.add(e)
        if len(e) > 48:
            out.update((e[:32], e[-32:]))
    return sorted(out)


def _norm(text: str) -> str:
    return " ".join(text.split())


class _Builder:
    def __init__(self, kb: Any, cfg: DataGenConfig, excluded: set[str], count_tokens: TokenCounter | None):
        self.kb, self.cfg, self.excluded, self.count_tokens = kb, cfg, excluded, count_tokens
        self.skip_names = NAME_SKIP | {w.upper() for w in cfg.skip_names}
        self.stats: Counter[str] = Counter()
        self.unrelated: list[Any] = []  # distractors retrieved for an earlier chunk's question

    def distractors(self, question: str, gold_id: str, answer: str) -> list[Any]:
        hits = self.kb.search(question, k=self.cfg.k + 3)
        out = [h for h in hits if h.chunk_id != gold_id and h.chunk_id not in self.excluded
               and support_score(answer, [h.text]) < 0.6]
        return out[: self.cfg.k - 1]

    def context(self, question: str, texts: list[str], lang: str) -> tuple[list[dict[str, str]], list[int],
                                                                           list[Evidence], list[str]]:
        return engine_context(question, texts, lang=lang, evidence_sentences=self.cfg.evidence_sentences,
                              max_context_tokens=self.cfg.max_context_tokens, count_tokens=self.count_tokens)

    def answer_example(self, rng: random.Random, question: str, sentence: str, chunk: Any, lang: str,
                       distractors: list[Any], template: str) -> TrainExample | None:
        texts = [h.text for h in distractors]
        gold_pos = 0 if rng.random() < self.cfg.gold_first_fraction else rng.randint(0, len(texts))
        texts.insert(gold_pos, chunk.text)
        messages, order, evidence, fitted = self.context(question, texts, lang)
        if gold_pos not in order:
            self.stats["filtered: gold passage not selected"] += 1
            return None
        number = order.index(gold_pos) + 1
        if _norm(sentence) not in _norm(fitted[number - 1]):
            self.stats["filtered: answer sentence not in the prompt"] += 1
            return None
        ev_texts = [ev.text for ev in evidence]
        if support_score(sentence, [chunk.text]) < 0.99 or unsupported_details(sentence, ev_texts, question):
            self.stats["filtered: answer not supported by the chunk"] += 1
            return None
        sentence = _norm(sentence)
        answer = sentence
        if self.cfg.answer_span == "passage":
            rest = _norm(_norm(fitted[number - 1]).replace(sentence, " "))
            answer = f"{sentence} {rest}" if rest else sentence
        target = f"{answer.rstrip()} [{number}]"
        meta = {"kind": "answer", "template": template, "question": question, "sentence": sentence,
                "lang": lang, "chunk_id": chunk.chunk_id, "source": chunk.path, "gold": number,
                "passages": len(order), "distractors": len(order) - 1}
        return TrainExample(messages + [{"role": "assistant", "content": target}], meta)

    def unknown_example(self, rng: random.Random, question: str, sentence: str, chunk: Any, lang: str,
                        distractors: list[Any], template: str) -> TrainExample | None:
        context = "retrieved"
        if self.cfg.unrelated_unknown_fraction > 0 and self.unrelated \
                and rng.random() < self.cfg.unrelated_unknown_fraction:
            other = [h for h in self.unrelated
                     if h.chunk_id != chunk.chunk_id and support_score(sentence, [h.text]) < 0.6]
            if other:
                distractors, context = other, "unrelated"
        if not distractors:
            self.stats["filtered: no distractor for unknown"] += 1
            return None
        messages, order, _, _ = self.context(question, [h.text for h in distractors], lang)
        if not order:
            return None
        meta = {"kind": "unknown", "template": template, "question": question, "lang": lang,
                "chunk_id": chunk.chunk_id, "source": chunk.path, "passages": len(order),
                "distractors": len(order), "context": context}
        return TrainExample(messages + [{"role": "assistant", "content": unknown_text(lang)}], meta)

    def candidates(self, rng: random.Random, chunk: Any, question_fn: Callable[[str, str], str | None] | None,
                   ) -> list[tuple[str, str, str]]:
        lang = detect_lang(chunk.text)
        heading = str(chunk.metadata.get("heading") or chunk.metadata.get("title") or "")
        found: list[tuple[str, str, str]] = []
        for sent in split_sentences(chunk.text):
            sent = _norm(sent)
            if not (self.cfg.min_answer_chars <= len(sent) <= self.cfg.max_answer_chars):
                continue
            if question_fn is not None and rng.random() < self.cfg.llm_question_fraction:
                q = question_fn(sent, lang)
                if q:
                    found.append((q, sent, "generator"))
                    continue
            qs = questions_for(sent, heading, lang, self.skip_names)
            if qs:
                q, name = qs[0] if qs[0][1] != "keywords" or len(qs) == 1 or rng.random() < 0.3 else qs[1]
                found.append((q, sent, name))
        specific = [c for c in found if c[2] != "keywords"]
        generic = [c for c in found if c[2] == "keywords"]
        rng.shuffle(specific)
        rng.shuffle(generic)
        return (specific + generic)[: self.cfg.per_chunk]


def generate_examples(kb: Any, config: DataGenConfig | None = None, *, exclude_evidence: Sequence[str] = (),
                      exclude_chunks: Collection[str] = (), count_tokens: TokenCounter | None = None,
                      question_fn: Callable[[str, str], str | None] | None = None,
                      show_progress: bool | None = None) -> tuple[list[TrainExample], dict[str, int]]:
    """RAFT-style examples from ``kb`` (a KnowledgeBase). Returns (examples, counters).

    Chunks containing any of ``exclude_evidence`` (the eval set's evidence), and the chunks whose id is in
    ``exclude_chunks`` (held out for evaluation, as ``kb tune`` does), are neither gold nor distractor.
    ``count_tokens`` should be the generator's tokenizer counter (as in the query engine).
    """
    from tqdm.auto import tqdm

    cfg = config or DataGenConfig()
    rng = random.Random(cfg.seed)
    needles = _needles(exclude_evidence)
    ids: list[int] = []
    excluded: set[str] = set()
    excluded_rows: set[int] = set()
    for batch in kb.docstore.iter_texts():
        for row_id, text in batch:
            ids.append(row_id)
            if needles and _contains_any(text, needles):
                excluded_rows.add(row_id)
    if exclude_chunks:
        wanted = set(exclude_chunks)
        excluded_rows.update(i for i, c in kb.docstore.get_chunks(ids).items() if c.chunk_id in wanted)
    if excluded_rows:
        excluded = {c.chunk_id for c in kb.docstore.get_chunks(sorted(excluded_rows)).values()}
    pool = [i for i in ids if i not in excluded_rows]
    if not pool:
        raise ConfigError("the knowledge base has no chunks to build training data from (ingest files first)")
    rng.shuffle(pool)
    builder = _Builder(kb, cfg, excluded, count_tokens)
    builder.stats["chunks"] = len(ids)
    builder.stats["chunks excluded (eval evidence)"] = len(excluded_rows)
    n_unknown = round(cfg.n * cfg.unknown_fraction)
    n_answer = cfg.n - n_unknown
    answers: list[TrainExample] = []
    unknowns: list[TrainExample] = []
    disable = (not logger.isEnabledFor(logging.INFO)) if show_progress is None else not show_progress
    bar = tqdm(total=cfg.n, desc="preparing", unit="ex", disable=disable)
    for start in range(0, len(pool), 64):
        if len(answers) >= n_answer and len(unknowns) >= n_unknown:
            break
        rows = kb.docstore.get_chunks(pool[start:start + 64])
        for row_id in pool[start:start + 64]:
            chunk = rows[row_id]
            last: list[Any] = []
            for question, sentence, template in builder.candidates(rng, chunk, question_fn):
                if len(answers) >= n_answer and len(unknowns) >= n_unknown:
                    break
                lang = detect_lang(question)
                distractors = builder.distractors(question, chunk.chunk_id, sentence)
                if len(answers) < n_answer:
                    ex = builder.answer_example(rng, question, sentence, chunk, lang, distractors, template)
                    if ex is not None:
                        answers.append(ex)
                        bar.update(1)
                if len(unknowns) < n_unknown:
                    ex = builder.unknown_example(rng, question, sentence, chunk, lang, distractors, template)
                    if ex is not None:
                        unknowns.append(ex)
                        bar.update(1)
                last = distractors or last
            if last:  # unrelated contexts for later chunks' unknown examples
                builder.unrelated = last
    bar.close()
    examples = answers + unknowns
    rng.shuffle(examples)
    stats = dict(builder.stats)
    stats.update({"answer examples": len(answers), "unknown examples": len(unknowns)})
    stats.update(Counter(f"template {ex.meta['template']}" for ex in answers))
    stats.update(Counter(f"unknown context {ex.meta['context']}" for ex in unknowns))
    if len(examples) < cfg.n:
        logger.warning("only %d of %d requested examples could be built from %d chunks", len(examples), cfg.n,
                       len(pool))
    return examples, stats


def generator_question_fn(generator: Any) -> Callable[[str, str], str | None]:
    """A question writer using the local generator; its output is kept only when it looks like a question
    about the sentence (ends with '?', shares a content term with it, not a copy of it)."""
    from ..config import GenerationConfig

    gen_cfg = GenerationConfig(max_new_tokens=32, max_sentences=1)
    prompts = {"en": "Write one short question that is answered by this sentence.\nSentence: {s}",
               "zh": "写一个可以用这句话回答的简短问题。\n句子：{s}"}

    def write(sentence: str, lang: str) -> str | None:
        msg = [{"role": "user", "content": prompts.get(lang, prompts["en"]).format(s=sentence)}]
        q = _norm(generator.generate(msg, gen_cfg)).removeprefix("Question:").strip()
        if not q.endswith(("?", "？")) or len(q) > 160 or _norm(q.lower()) in sentence.lower():
            return None
        return q if set(terms(q)) & set(terms(sentence)) else None

    return write
