"""Prompt building: system prompt in the question's language, numbered passages [1]..[n] within a
token budget, and the fixed "unknown" answers.

The messages are plain ``[{"role", "content"}]`` lists; the generator renders them with the model's
own chat template (``Generator.render``). The system prompt comes first and never changes for a
language, so the generator can reuse its KV cache across questions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .extractive import is_cjk

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

TokenCounter = Callable[[str], int]


def detect_lang(text: str) -> str:
    """``"zh"`` or ``"en"``: the loaders' detector when available, else a local CJK heuristic."""
    try:
        from .loaders.base import detect_lang as _loader_detect

        return _loader_detect(text)
    except ImportError:  # pragma: no cover - loaders are part of the package
        return "zh" if is_cjk(text) else "en"


def estimate_tokens(text: str) -> int:
    """A rough token count when no tokenizer is at hand: ~4 chars/token Latin, ~1 token per CJK char."""
    cjk = len(re.findall(r"[\u3400-\u9fff]", text))
    return cjk + max(0, len(text) - cjk) // 4 + 1


def fit_passages(
    passages: Sequence[str],
    *,
    max_tokens: int,
    count_tokens: TokenCounter | None = None,
    min_passages: int = 1,
) -> list[str]:
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


def build_messages(
    question: str,
    passages: Sequence[str],
    *,
    lang: str | None = None,
    max_context_tokens: int = 384,
    count_tokens: TokenCounter | None = None,
    system_prompts: dict[str, str] | None = None,
) -> tuple[list[dict[str, str]], int]:
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


def unknown_text(lang: str, overrides: dict[str, str] | None = None) -> str:
    texts = {**UNKNOWN_TEXT, **(overrides or {})}
    return texts.get(lang, texts["en"])


# ------------------------------------------------------------------ follow-up rewriting
_FOLLOWUP_STARTS_EN = ("and ", "what about", "how about", "also", "what else", "then ", "so ", "but ")
_FOLLOWUP_STARTS_ZH = ("那", "还有", "另外", "此外", "然后", "并且", "而", "那么")
_PRONOUNS_EN = frozenset(("it", "its", "they", "them", "their", "this", "that", "these", "those", "he", "she",
                         "him", "her", "there"))
_PRONOUNS_ZH = ("它", "他", "她", "这个", "那个", "这些", "那些", "其", "该")


def is_followup(question: str) -> bool:
    """True when ``question`` reads as a follow-up that needs the previous question's context.

    Rule: it starts with a follow-up marker ("and", "what about", "how about", "also", "那", "还有",
    "另外"...), or contains a pronoun ("it", "they", "this", "它", "这个"...), or is short (at most 2
    English content words / at most 4 CJK characters besides question words).
    """
    from .extractive import EN_STOPWORDS, ZH_STOPWORDS

    q = question.strip().lower()
    if detect_lang(q) == "zh":
        if q.startswith(_FOLLOWUP_STARTS_ZH) or any(p in q for p in _PRONOUNS_ZH):
            return True
        content = re.sub(r"[^\u3400-\u9fff]", "", q)
        for w in sorted(ZH_STOPWORDS, key=len, reverse=True):
            content = content.replace(w, "")
        return len(content) <= 4
    if q.startswith(_FOLLOWUP_STARTS_EN):
        return True
    words = re.findall(r"[a-z0-9]+", q)
    # pronouns are matched on the original case: "IT" (the department) is not "it"
    original = [w for w in re.findall(r"[A-Za-z0-9]+", question) if not (w.isupper() and len(w) > 1)]
    if any(w.lower() in _PRONOUNS_EN for w in original):
        return True
    return len([w for w in words if w not in EN_STOPWORDS]) <= 2


def rewrite_followup(question: str, previous: str | None, *, max_terms: int = 6) -> str:
    """A standalone version of a follow-up ``question``: the previous (standalone) question's key
    terms that the new one lacks are prepended ("annual leave days: what about part-time staff?"); for
    a Chinese previous question the whole question is prepended ("全职员工有多少天年假：那兼职员工呢？").
    Questions that are not follow-ups (see :func:`is_followup`) are returned unchanged."""
    if not previous or not is_followup(question):
        return question
    from .extractive import terms

    lang = detect_lang(previous)
    if lang == "zh":  # jieba splits rare words ("年假" -> 年/假): keep the previous question whole
        return previous.strip().rstrip("？?。！!") + "：" + question.strip()
    current = set(terms(question))
    key = [t for t in dict.fromkeys(terms(previous)) if t not in current]
    if not key:
        return question
    return " ".join(key[:max_terms]) + ": " + question.strip()
