"""Text primitives shared by every stage: CJK tests, language detection, stopwords, sentence
splitting, content terms and citation markers. One place for each; stages import from here.

Two sentence splitters exist on purpose, with different jobs:

* :func:`sentence_spans` cuts a document into the units the chunker packs (any end mark or line break,
  offsets kept so chunks are exact slices of the document);
* :func:`split_sentences` cuts passages into the candidate answer sentences the evidence selector scores
  (a Latin ``.``/``;`` ends a sentence only before a capital, digit, quote or CJK character, so
  abbreviations and paths such as ``e.g. foo`` or ``/etc/apt.conf`` stay whole).

Two stopword lists exist on purpose too: :data:`SEARCH_STOPWORDS_EN` / :data:`SEARCH_STOPWORDS_ZH`
are the short lists of the BM25 analyzer (changing them changes the index: bump
``analysis.ANALYZER_VERSION``); :data:`ANSWER_STOPWORDS_EN` / :data:`ANSWER_STOPWORDS_ZH` also drop
question words and fillers ("tell", "please", "什么", "如何"), for matching answers with evidence.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

#: Han ideographs (unified, extension A, compatibility)
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: Han ideographs (all planes) and Japanese kana: scripts written without spaces between words
CJK_NO_SPACE = "\u3040-\u30ff" + HAN_CLASS + "\U00020000-\U0002ffff"
#: Hangul syllables (Korean puts spaces between words)
HANGUL = "\uac00-\ud7af"
#: every CJK script the product treats as "Chinese-like"
CJK_CLASS = CJK_NO_SPACE + HANGUL
CJK_RE = re.compile(f"[{CJK_CLASS}]")
HAN_RE = re.compile(f"[{HAN_CLASS}]")
HAN_RUN_RE = re.compile(f"[{HAN_CLASS}]+")

LANGS = ("en", "zh")


def has_cjk(text: str) -> bool:
    """True when ``text`` holds at least one CJK character."""
    return CJK_RE.search(text) is not None


def detect_lang(text: str) -> str:
    """``"zh"`` when CJK characters are more than 20 % of the letters of ``text``, else ``"en"``.

    The one language rule of the product: document and chunk ``lang`` metadata, the query language of
    retrieval, the answer language and the fine-tuning data all use it.
    """
    letters = 0
    cjk = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if CJK_RE.match(ch):
                cjk += 1
    if letters == 0:
        return "en"
    return "zh" if cjk / letters > 0.2 else "en"


# ------------------------------------------------------------------ stopwords
_SEARCH_STOPWORDS_EN = """
a an and are as at be been but by can could did do does for from had has have how i if in into is it
its me my of on or our should so than that the their them then there these they this those to was we
were what when where which who whom why will with would you your
"""
_SEARCH_STOPWORDS_ZH = """
的 了 是 在 和 与 或 及 也 都 就 而 被 把 让 吗 呢 吧 啊 我 你 他 她 它 我们 你们 他们 这 那 这个 那个
一个 什么 怎么 怎样 如何 哪些 哪个 为什么 可以 能 会 要 有 没有 之 其 中 上 下 对 为 以 等 着 个
"""
_ANSWER_STOPWORDS_EN = """
a an the of to in on at for by with from as is are was were be been being am do does did
what which who whom whose when where why how that this these those it its they them their there
and or but if then so not no yes can could should would will shall may might must i you he she we
me my your our his her us about into over under than too very just also any some all each more most
other such only own same s t don doesn isn aren wasn weren has have had having tell please know
many much get gets got
"""
_ANSWER_STOPWORDS_ZH = """
的 了 是 在 和 与 及 或 吗 呢 吧 啊 么 什么 怎么 如何 哪 哪些 哪个 多少 几 谁 为什么 请问 请
我 你 他 她 它 我们 你们 他们 这 那 这个 那个 有 没有 一个 可以 能 会 要 把 被 对 从 中 上 下 为
吗？ 呀 嘛 就 都 也 还 又 很 该 其
"""


SEARCH_STOPWORDS_EN = frozenset(_SEARCH_STOPWORDS_EN.split())
SEARCH_STOPWORDS_ZH = frozenset(_SEARCH_STOPWORDS_ZH.split())
ANSWER_STOPWORDS_EN = frozenset(_ANSWER_STOPWORDS_EN.split())
ANSWER_STOPWORDS_ZH = frozenset(_ANSWER_STOPWORDS_ZH.split())


# ------------------------------------------------------------------ jieba (lazy, once per process)
_jieba: Any = None
_jieba_lock = threading.Lock()


def jieba() -> Any:
    """The jieba module, initialised once (its dictionary takes ~1 s to build on first use)."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba as _mod

                _mod.setLogLevel(logging.WARNING)
                _mod.initialize()
                _jieba = _mod
    return _jieba


# ------------------------------------------------------------------ sentences
# chunk units end after CJK/ASCII end marks (plus closing quotes/brackets), after '.' before
# whitespace, or at a line break
_UNIT_BOUNDARY_RE = re.compile(r"[。！？；!?;]+[”’」』）)\]\"']*|\.(?=\s)|\n")
# answer sentences: Chinese 。！？； (no space needed) or Latin .!? followed by space/end; line breaks
_SENT_SPLIT_RE = re.compile(r"(?<=[。！？；!?])\s*|(?<=[.;])\s+(?=[A-Z0-9\"'(\[\u4e00-\u9fff])|\n{1,}")
#: a sentence end followed by the start of the next sentence (trailing citations "[1]" stay with it)
SENTENCE_END_RE = re.compile(r"(?:[.!?](?:\s*\[\d+\])*\s+|[。！？](?:\s*\[\d+\])*\s*)(?=[^\s\[])")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of the chunker's sentence units in ``text``, whitespace-trimmed, none empty."""
    return list(iter_sentence_spans(text))


def iter_sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    """:func:`sentence_spans` one at a time (a long document never holds all its spans at once)."""
    start = 0
    for match in _UNIT_BOUNDARY_RE.finditer(text):
        end = match.end()
        span = trim_span(text, start, end)
        if span is not None:
            yield span
        start = end
    span = trim_span(text, start, len(text))
    if span is not None:
        yield span


def trim_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` without the whitespace at both ends; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


# a line that ends a sentence, a clause before a list, or a heading ("...:", "...。", "5.4 Title?")
_HARD_LINE_END_RE = re.compile(r"[.!?:;。！？；：]['\"’”)）\]」』]*\s*(?:\[\d+\])?$")
# a line that starts something new: a bullet, a numbered item or heading, a table row, a chapter, a
# shell prompt or comment
_NEW_LINE_START_RE = re.compile(
    r"^\s*(?:[•·▪◦●○■□➢►‣*>|+\-–—→$#%]|\d+(?:\.\d+)*[.)]?\s|[a-z][.)]\s|第\S{1,4}[章节]|(?:chapter|section|"
    r"appendix|part)\b)", re.IGNORECASE)
#: a page's text width, in display columns (a Han character counts two): wrapped lines are at least this
#: share of the text's width, and a text whose lines run wider than ``_WRAP_MAX`` is not layout text
_WRAP_FULL, _WRAP_MIN, _WRAP_MAX = 0.75, 40, 200
# an English sentence broken in its middle: a lowercase word ends the line, another starts the next one
_MID_SENTENCE_END_RE = re.compile(r"(?:^|\s)[a-z]+,?$")
_MID_SENTENCE_START_RE = re.compile(r"[a-z]+(?:[\s,;:]|$)(?![^\n]{0,40}[\u4e00-\u9fff])")


def _width(line: str) -> int:
    return len(line) + len(CJK_RE.findall(line))


def unwrap_lines(text: str) -> str:
    """``text`` with the line breaks that only wrap a sentence (PDF layout lines) joined: a line that fills
    the text's width (its 90th-percentile line width, at most ``_WRAP_MAX`` columns: paragraphs of HTML or
    Markdown run wider and keep every break), with no end mark, followed by one that goes on (anything
    but a list item, a numbered heading, a table row or a capitals heading; Han after Han is joined without
    a space). Blank lines, list items, headings, short lines keep their breaks.

    A few wider lines (a PDF line that ran into the next, a long URL) do not hide a page of wrapped lines:
    when the 90th percentile runs wider than ``_WRAP_MAX``, the page width is the widest one at most
    ``_WRAP_MAX`` that three lines or more fill (85 % of it or more), and only an English break in mid-
    sentence (a lowercase word, then a line that goes on with one) is joined."""
    if "\n" not in (text or ""):
        return text or ""
    lines = text.split("\n")
    widths = sorted(_width(line.strip()) for line in lines if line.strip())
    page = widths[min(len(widths) - 1, int(0.9 * len(widths)))] if widths else 0
    strict = page > _WRAP_MAX
    if strict:
        page = next((w for w in reversed(widths) if _WRAP_MIN <= w <= _WRAP_MAX
                     and sum(0.85 * w <= x <= w for x in widths) >= 3), 0)
    if not _WRAP_MIN <= page <= _WRAP_MAX:
        return text
    full = max(_WRAP_MIN, _WRAP_FULL * page)
    out = [lines[0]]
    for line in lines[1:]:
        prev, nxt = out[-1].rstrip(), line.lstrip()
        if _width(prev) >= full and _continues(prev, nxt) and (
                not strict or (_MID_SENTENCE_END_RE.search(prev) and _MID_SENTENCE_START_RE.match(nxt))):
            han = bool(HAN_RUN_RE.match(nxt[:1])) and bool(HAN_RUN_RE.match(prev[-1:]))
            out[-1] = prev + ("" if han or prev.endswith("-") else " ") + nxt
        else:
            out.append(line)
    return "\n".join(out)


def _continues(prev: str, nxt: str) -> bool:
    """``nxt`` goes on with the sentence of the full line ``prev``."""
    if not nxt or _HARD_LINE_END_RE.search(prev) or _NEW_LINE_START_RE.match(nxt) or " | " in prev + nxt:
        return False  # a sentence's end, a new item, a table row
    if prev[:1].isdigit() and _NEW_LINE_START_RE.match(prev) and len(prev.split()) <= 12:
        return False  # a numbered heading
    first = nxt[:1]
    return not (first.isupper() and not nxt[1:2].islower())  # not an acronym or a capitals heading


def split_sentences(text: str, *, max_chars: int = 400) -> list[str]:
    """Candidate answer sentences of ``text`` (English and Chinese), the lines that only wrap a sentence
    joined first (:func:`unwrap_lines`); longer pieces cut at ``max_chars``."""
    out: list[str] = []
    for piece in _SENT_SPLIT_RE.split(unwrap_lines(text or "")):
        piece = piece.strip()
        while len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            out.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if piece:
            out.append(piece)
    return out


def truncate_sentences(text: str, max_sentences: int | None) -> str:
    """Keep the first ``max_sentences`` sentences of ``text`` (with their trailing citations)."""
    if not max_sentences:
        return text.strip()
    for i, m in enumerate(SENTENCE_END_RE.finditer(text), start=1):
        if i == max_sentences:
            return text[: m.end()].strip()
    return text.strip()


# ------------------------------------------------------------------ content terms
_WORD_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


def terms(text: str) -> list[str]:
    """Content terms for matching answers with evidence: lowercase Latin words (stopwords dropped) and,
    for runs of Han characters, jieba words of two or more characters plus the single characters."""
    low = (text or "").lower()
    out = [w for w in _WORD_RE.findall(low) if w not in ANSWER_STOPWORDS_EN]
    for run in HAN_RUN_RE.findall(low):
        words = [w for w in jieba().lcut(run) if w.strip()] if len(run) > 1 else [run]
        out.extend(w for w in words if w not in ANSWER_STOPWORDS_ZH and len(w) > 1)
        out.extend(ch for ch in run if ch not in ANSWER_STOPWORDS_ZH)
    return out


# ------------------------------------------------------------------ citations
#: a citation marker ``[n]``; group 1 is the passage number
CITATION_RE = re.compile(r"\[(\d+)\]")
_CITATION_WITH_SPACE_RE = re.compile(r"[ \t]*\[\d+\]")


def citation_numbers(text: str) -> list[int]:
    """The passage numbers cited in ``text``, in order of appearance (repeats kept)."""
    return [int(n) for n in CITATION_RE.findall(text or "")]


def strip_citations(text: str) -> str:
    """Remove ``[n]`` markers (line breaks are kept: they separate sentences)."""
    text = _CITATION_WITH_SPACE_RE.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
