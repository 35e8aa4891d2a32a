"""Conversations: follow-up questions rewritten into standalone ones before retrieval, bounded history."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..text import ANSWER_STOPWORDS_EN, ANSWER_STOPWORDS_ZH, detect_lang, terms

if TYPE_CHECKING:
    from .answer import Answer

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
    q = question.strip().lower()
    if detect_lang(q) == "zh":
        if q.startswith(_FOLLOWUP_STARTS_ZH) or any(p in q for p in _PRONOUNS_ZH):
            return True
        content = re.sub(r"[^\u3400-\u9fff]", "", q)
        for w in sorted(ANSWER_STOPWORDS_ZH, key=len, reverse=True):
            content = content.replace(w, "")
        return len(content) <= 4
    if q.startswith(_FOLLOWUP_STARTS_EN):
        return True
    words = re.findall(r"[a-z0-9]+", q)
    # pronouns are matched on the original case: "IT" (the department) is not "it"
    original = [w for w in re.findall(r"[A-Za-z0-9]+", question) if not (w.isupper() and len(w) > 1)]
    if any(w.lower() in _PRONOUNS_EN for w in original):
        return True
    return len([w for w in words if w not in ANSWER_STOPWORDS_EN]) <= 2


def rewrite_followup(question: str, previous: str | None, *, max_terms: int = 6) -> str:
    """A standalone version of a follow-up ``question``: the previous (standalone) question's key
    terms that the new one lacks are prepended ("annual leave days: what about part-time staff?"); for
    a Chinese previous question the whole question is prepended ("全职员工有多少天年假：那兼职员工呢？").
    Questions that are not follow-ups (see :func:`is_followup`) are returned unchanged."""
    if not previous or not is_followup(question):
        return question
    lang = detect_lang(previous)
    if lang == "zh":  # jieba splits rare words ("年假" -> 年/假): keep the previous question whole
        return previous.strip().rstrip("？?。！!") + "：" + question.strip()
    current = set(terms(question))
    key = [t for t in dict.fromkeys(terms(previous)) if t not in current]
    if not key:
        return question
    return " ".join(key[:max_terms]) + ": " + question.strip()


class ChatSession:
    """A conversation: follow-up questions are rewritten into standalone ones before retrieval
    (:func:`rewrite_followup`); the last ``max_history_turns`` turns are kept."""

    def __init__(self, engine: Any, max_history_turns: int = 3) -> None:
        self.engine = engine
        self.history: deque[tuple[str, str, Answer]] = deque(maxlen=max(1, max_history_turns))

    def rewrite(self, question: str) -> str:
        previous = self.history[-1][1] if self.history else None
        return rewrite_followup(question, previous)

    def ask(self, question: str, **params: Any) -> Answer:
        query = self.rewrite(question)
        answer = self.engine.ask(question, query=query, **params)
        self.history.append((question, query, answer))
        return answer

    def ask_stream(self, question: str, **params: Any) -> Iterator[str]:
        """Yield answer pieces; the turn is recorded (and ``last_answer`` set) when the stream ends."""
        query = self.rewrite(question)
        streaming = self.engine.ask_stream(question, query=query, **params)
        yield from streaming
        assert streaming.answer is not None
        self.history.append((question, query, streaming.answer))

    @property
    def last_answer(self) -> Answer | None:
        return self.history[-1][2] if self.history else None

    def reset(self) -> None:
        self.history.clear()
