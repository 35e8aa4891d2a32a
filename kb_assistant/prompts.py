"""The prompt, in one place: context assembly and rendering, for serving, training and evaluation.

    ctx = select_context(question, [hit.text for hit in hits], evidence_sentences=3)
    messages, n = ctx.messages(max_context_tokens=256, count_tokens=generator.count_tokens)
    text = render(tokenizer, messages)          # what the model reads, at serving and at training time

* :func:`select_context` — evidence selection over the ranked passages (citation markers stripped
  first), one prompt passage per passage that gave evidence, in rank order, its text the evidence
  sentences in document order;
* :meth:`PromptContext.messages` — the system prompt in the question's language and the numbered
  passages [1]..[n] within a token budget;
* :func:`render` — the model's chat template, or a plain layout for models without one.

The query engine, fine-tuning data generation, training-time encoding and fine-tuning evaluation all
call these functions, so an adapter is trained on exactly the prompts the engine shows it (a test
proves the two paths give byte-identical prompts). The system prompt comes first and never changes for
a language, so the generator can reuse its KV cache across questions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .evidence import Evidence, SentenceScorer, select_evidence
from .text import detect_lang, strip_citations

UNKNOWN_TEXT: dict[str, str] = {
    "en": "I don't know: the knowledge base has no information about this.",
    "zh": "抱歉，知识库中没有找到与该问题相关的信息。",
}

SYSTEM_PROMPTS: dict[str, str] = {
    "en": (
        "You answer questions about company documents. Use only the numbered passages. "
        "Answer in one short sentence that copies the relevant fact, and cite the passage number like [1]."
    ),
    "zh": (
        "你根据公司文档回答问题。只使用编号的资料。"
        "用一句简短的中文回答，照抄相关事实，并注明资料编号，如[1]。"
    ),
}

_LABELS = {
    "en": ("Passages:", "Question:"),
    "zh": ("资料：", "问题："),
}
#: the cue after the prompt for models without a chat template (base models)
PLAIN_ANSWER_CUE = "\nAnswer:"

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """A rough token count when no tokenizer is at hand: ~4 chars/token Latin, ~1 token per CJK char."""
    cjk = len(re.findall(r"[\u3400-\u9fff]", text))
    return cjk + max(0, len(text) - cjk) // 4 + 1


def fit_passages(passages: Sequence[str], *, max_tokens: int, count_tokens: TokenCounter | None = None,
                 min_passages: int = 1) -> list[str]:
    """The leading passages whose numbered lines fit in ``max_tokens`` (at least ``min_passages``,
    the last one cut to fit when even that does not)."""
    count = count_tokens or estimate_tokens
    out: list[str] = []
    used = 0
    for i, text in enumerate(passages, start=1):
        text = " ".join(text.split())
        cost = count(f"[{i}] {text}\n")
        if used + cost > max_tokens:
            if len(out) < min_passages:
                # cut proportionally, keeping at least a few words
                keep = max(20, int(len(text) * max(0.0, (max_tokens - used)) / max(cost, 1)))
                out.append(text[:keep])
            break
        out.append(text)
        used += cost
    return out


def format_passages(passages: Sequence[str]) -> str:
    return "\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=1))


def build_messages(question: str, passages: Sequence[str], *, lang: str | None = None,
                   max_context_tokens: int = 384, count_tokens: TokenCounter | None = None,
                   system_prompts: dict[str, str] | None = None) -> tuple[list[dict[str, str]], int]:
    """Chat messages asking ``question`` over numbered ``passages`` (best first).

    Returns ``(messages, n)`` where ``n`` passages fitted the budget; passage ``[i]`` is ``passages[i-1]``.
    """
    lang = lang or detect_lang(question)
    prompts = {**SYSTEM_PROMPTS, **(system_prompts or {})}
    system = prompts.get(lang, prompts["en"])
    fitted = fit_passages(passages, max_tokens=max_context_tokens, count_tokens=count_tokens)
    head, q_label = _LABELS.get(lang, _LABELS["en"])
    user = f"{head}\n{format_passages(fitted)}\n\n{q_label} {question.strip()}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}], len(fitted)


@dataclass
class PromptContext:
    """The evidence behind a prompt: ``order[i]`` is the hit index of passage ``[i + 1]``,
    ``ev_number[j]`` the passage number of ``evidence[j]``, ``passages`` the passage texts."""

    question: str
    lang: str
    evidence: list[Evidence]
    order: list[int]
    ev_number: list[int]
    passages: list[str]

    def messages(self, *, max_context_tokens: int, count_tokens: TokenCounter | None = None,
                 system_prompts: dict[str, str] | None = None) -> tuple[list[dict[str, str]], int]:
        """The chat messages of this context (see :func:`build_messages`) and how many passages fitted."""
        return build_messages(self.question, self.passages, lang=self.lang,
                              max_context_tokens=max_context_tokens, count_tokens=count_tokens,
                              system_prompts=system_prompts)


def select_context(question: str, texts: Sequence[str], *, lang: str | None = None,
                   evidence_sentences: int = 3, focus: str | None = None,
                   scorer: SentenceScorer | None = None, dense_weight: float = 0.0) -> PromptContext | None:
    """The evidence of ranked passage ``texts`` for ``question`` (None when no text gives evidence).

    ``focus``: the user's own words when ``question`` is a rewritten follow-up (their terms weigh more).
    ``scorer``/``dense_weight``: sentence similarity by embedding (see :func:`select_evidence`).
    """
    lang = lang or detect_lang(question)
    evidence = select_evidence(question, [strip_citations(t) for t in texts],
                               max_sentences=evidence_sentences, focus=focus, lang=lang,
                               scorer=scorer, dense_weight=dense_weight)
    if not evidence:
        return None
    order = sorted({ev.passage for ev in evidence})
    number = {p: i for i, p in enumerate(order, start=1)}
    passages = [" ".join(ev.text for ev in sorted(evidence, key=lambda e: e.position) if ev.passage == p)
                for p in order]
    return PromptContext(question, lang, evidence, order, [number[ev.passage] for ev in evidence], passages)


def render(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The prompt text the model reads: its chat template with the generation cue, or, for a model
    without one, the non-assistant contents as plain paragraphs and an answer cue to complete."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"].strip() for m in messages if m["role"] != "assistant") + PLAIN_ANSWER_CUE


def unknown_text(lang: str, overrides: dict[str, str] | None = None) -> str:
    texts = {**UNKNOWN_TEXT, **(overrides or {})}
    return texts.get(lang, texts["en"])
