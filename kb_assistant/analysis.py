"""Text analysis for keyword (BM25) search, English and Chinese.

* NFKC-normalised, case-folded.
* Technical English tokens stay whole: ``apt-get``, ``/etc/fstab``, ``err_42``, ``dpkg-reconfigure``,
  ``ssh.conf``; their parts are emitted too (``apt``, ``get``, ``etc``, ``fstab``...), so a query for
  ``fstab`` still matches ``/etc/fstab`` while a query for ``/etc/fstab`` prefers the exact path.
* A light English stopword list and a conservative plural folding (``packages`` -> ``package``) on
  plain alphabetic words only (never on compound tokens such as command names).
* Runs of CJK characters are segmented with jieba in search mode (words and their sub-words), with a
  short Chinese stopword list. jieba loads its dictionary (~1 s) lazily on first CJK text.

``ANALYZER_VERSION`` is stored with the sparse index; changing the rules must bump it (the index is
then rebuilt from the docstore on open).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from typing import Any

ANALYZER_VERSION = 1

_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_WORDCH = rf"[^\W{_CJK_CLASS}]"
_SEP = r"[-./_:+@#~]"
_TOKEN = re.compile(
    rf"(?P<cjk>[{_CJK_CLASS}]+)|(?P<word>[/~$.]*{_WORDCH}+(?:{_SEP}+{_WORDCH}+)*)"
)
_PART_SPLIT = re.compile(rf"{_SEP}+|_")
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")

_EN_STOP = """
a an and are as at be been but by can could did do does for from had has have how i if in into is it
its me my of on or our should so than that the their them then there these they this those to was we
were what when where which who whom why will with would you your
"""

_ZH_STOP = """
的 了 是 在 和 与 或 及 也 都 就 而 被 把 让 吗 呢 吧 啊 我 你 他 她 它 我们 你们 他们 这 那 这个 那个
一个 什么 怎么 怎样 如何 哪些 哪个 为什么 可以 能 会 要 有 没有 之 其 中 上 下 对 为 以 等 着 个
"""

EN_STOPWORDS = frozenset(_EN_STOP.split())
ZH_STOPWORDS = frozenset(_ZH_STOP.split())

_jieba: Any = None
_jieba_lock = threading.Lock()


def _get_jieba() -> Any:
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def _fold_plural(word: str) -> str:
    if len(word) > 4 and word.isalpha() and word.isascii():
        if word.endswith("ies"):
            return word[:-3] + "y"
        if word.endswith("s") and not word.endswith(("ss", "us", "is")):
            return word[:-1]
    return word


def _word_tokens(token: str, out: list[str]) -> None:
    token = token.strip("_")
    if not token:
        return
    parts = [p for p in _PART_SPLIT.split(token.lstrip("/~$.")) if p]
    compound = len(parts) > 1 or token[0] in "/~$."
    if compound:
        out.append(token)
        for part in parts:
            if part not in EN_STOPWORDS:
                out.append(_fold_plural(part))
    elif token not in EN_STOPWORDS:
        out.append(_fold_plural(token))


def _cjk_tokens(run: str, out: list[str]) -> None:
    if len(run) == 1:
        if run not in ZH_STOPWORDS:
            out.append(run)
        return
    for word in _get_jieba().lcut_for_search(run, HMM=True):
        if word not in ZH_STOPWORDS:
            out.append(word)


def analyze(text: str) -> list[str]:
    """Index/query terms of ``text`` (with repetitions, in order)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.group("cjk"):
            _cjk_tokens(m.group("cjk"), out)
        else:
            _word_tokens(m.group("word"), out)
    return out


def query_lang(text: str) -> str:
    """'zh' when the query is written mostly in CJK characters, else 'en' (same rule as the chunker)."""
    from .chunking import text_lang

    return text_lang(text)
