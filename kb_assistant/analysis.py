"""Text analysis for keyword (BM25) search, English and Chinese.

* NFKC-normalised, case-folded.
* Technical English tokens stay whole: ``apt-get``, ``/etc/fstab``, ``err_42``, ``dpkg-reconfigure``,
  ``ssh.conf``; their parts are emitted too (``apt``, ``get``, ``etc``, ``fstab``...), so a query for
  ``fstab`` still matches ``/etc/fstab`` while a query for ``/etc/fstab`` prefers the exact path.
* A light English stopword list and a conservative plural folding (``packages`` -> ``package``) on
  plain alphabetic words only (never on compound tokens such as command names).
* Runs of CJK characters are segmented with jieba in search mode (words and their sub-words), with a
  short Chinese stopword list (both lists live in ``kb_assistant.text``). jieba loads its dictionary
  (~1 s) lazily on first CJK text.

``ANALYZER_VERSION`` is stored with the sparse index; changing the rules must bump it (the index is
then rebuilt from the docstore on open).
"""

from __future__ import annotations

import re
import unicodedata

from .text import CJK_CLASS, SEARCH_STOPWORDS_EN, SEARCH_STOPWORDS_ZH, jieba

ANALYZER_VERSION = 1

_WORDCH = rf"[^\W{CJK_CLASS}]"
_SEP = r"[-./_:+@#~]"
_TOKEN = re.compile(
    rf"(?P<cjk>[{CJK_CLASS}]+)|(?P<word>[/~$.]*{_WORDCH}+(?:{_SEP}+{_WORDCH}+)*)"
)
_PART_SPLIT = re.compile(rf"{_SEP}+|_")


def fold_plural(word: str) -> str:
    """``packages`` -> ``package``, ``libraries`` -> ``library``: plain ASCII words of five letters or more
    (never ``ss``/``us``/``is`` endings: ``class``, ``status``, ``analysis``)."""
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
            if part not in SEARCH_STOPWORDS_EN:
                out.append(fold_plural(part))
    elif token not in SEARCH_STOPWORDS_EN:
        out.append(fold_plural(token))


def _cjk_tokens(run: str, out: list[str]) -> None:
    if len(run) == 1:
        if run not in SEARCH_STOPWORDS_ZH:
            out.append(run)
        return
    for word in jieba().lcut_for_search(run, HMM=True):
        if word not in SEARCH_STOPWORDS_ZH:
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
