"""Template questions over one sentence of a chunk (English and Chinese).

Each template turns a sentence (and its chunk's heading) into ``(question, template_name)`` or None.
The answer is always the sentence itself, so a question is only kept when the sentence holds more
than the question asks (checked later by the data builder).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

from ..text import terms

_UNITS_EN = (
    "seconds|second|minutes|minute|hours|hour|days|day|weeks|week|months|month|years|year|"
    "characters|character|bytes|byte|kb|mb|gb|tb|mib|gib|percent|times|users|files|packages|lines|"
    "attempts|steps|servers|machines|copies|levels|bits|ports|partitions|disks|entries|fields|columns"
)
_NUM_EN_RE = re.compile(rf"\b(\d+(?:[.,]\d+)?)\s+({_UNITS_EN})\b", re.IGNORECASE)
_DEF_EN_RE = re.compile(
    r"^(?:The |An |A )?([A-Za-z][\w./:+-]*(?: [\w./:+-]+){0,4}) (is|are) (?:a|an|the|one of the) (.{12,})$")
_TO_EN_RE = re.compile(r"^To ([a-z][^,]{8,80}), (.{10,})$")
_IMPERATIVE_EN = ("run", "use", "edit", "open", "type", "install", "set", "add", "create", "enter",
                  "select", "click", "call", "execute", "configure", "enable", "disable", "remove")
_CMD_EN_RE = re.compile(r"^(?:The )?([\w.-]+(?: [\w.-]+)?) (command|program|tool|utility|option|file|package|"
                        r"daemon|service) (\w+s) (.{8,})$")
# answer spans a "which ...?" question can ask for: a path, a command-line option, an ALL-CAPS name
_PATH_RE = re.compile(r"(?<![\w/.~-])((?:~|/)[\w.+-]*(?:/[\w.+-]*)+|/[a-z][\w.+-]+)(?=[\s,;:)]|\.?$)")
_OPTION_RE = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*(?:=\S+)?)(?=[\s,;:)]|\.?$)")
_NAME_RE = re.compile(r"(?<![\w-])([A-Z][A-Z0-9_]{2,}(?: \d+)?)(?![\w-])")
#: ALL-CAPS words that are never an answer: admonition labels and grammar words. Labels specific to a
#: corpus (sidebar titles such as "GOING FURTHER") go in ``DataGenConfig.skip_names``.
NAME_SKIP = frozenset({"NOTE", "TIP", "CAUTION", "WARNING", "TO", "IN", "THE", "AND", "OR", "NOT"})
# "X and Y" / "X, Y or Z" after a first span of the same kind
_SPAN_KINDS = tuple((regex, kind, re.compile(r"(?:,| and| or|, and|, or) " + regex.pattern))
                    for regex, kind in ((_PATH_RE, "path"), (_OPTION_RE, "option"), (_NAME_RE, "name")))
_CODE_RE = re.compile(r"^[$#]|[{}<>|=\\]|\s[$#]\s")
_KEYWORD_FRAMES_EN = (
    "What does the documentation say about {terms}{where}?",
    "What should I know about {terms}{where}?",
    "What is said about {terms}{where}?",
    "Can you explain {terms}{where}?",
)
_NUM_ZH_RE = re.compile(r"(\d+(?:\.\d+)?)\s*"
                        r"(个工作日|天|小时|分钟|秒|周|个月|月|年|次|位|个字符|人|元|GB|MB|%)")
_DEF_ZH_RE = re.compile(r"^([\u4e00-\u9fffA-Za-z0-9 ._-]{2,16})(?:是|指)([\u4e00-\u9fffA-Za-z0-9].{6,})$")
_STEP_ZH_RE = re.compile(r"^(?:如需|如果需要|要|需要)([\u4e00-\u9fffA-Za-z0-9 ._-]{2,20})[，,](.{6,})$")

Template = Callable[[str, str], tuple[str, str] | None]


def _clean(sentence: str) -> str:
    return " ".join(sentence.split()).strip()


def _strip_end(text: str) -> str:
    return text.rstrip(" .;:!?。；：！？")


def en_number(sentence: str, heading: str) -> tuple[str, str] | None:
    """"... locked for 30 minutes ..." -> "... locked for how many minutes ...?" """
    m = _NUM_EN_RE.search(sentence)
    if not m:
        return None
    unit = m.group(2).lower()
    if not unit.endswith("s") and unit not in ("kb", "mb", "gb", "tb", "mib", "gib", "percent"):
        unit += "s"
    q = sentence[: m.start()] + f"how many {unit}" + sentence[m.end():]
    q = _strip_end(q)
    if len(q) > 200:
        return None
    return q[0].upper() + q[1:] + "?", "number"


def en_definition(sentence: str, heading: str) -> tuple[str, str] | None:
    """"X is a Y." -> "What is X?" """
    m = _DEF_EN_RE.match(_strip_end(sentence))
    if not m or m.group(1).lower() in ("it", "this", "that", "there", "which", "he", "she", "they"):
        return None
    subject = m.group(1)
    article = "" if subject[:1].isupper() or re.search(r"[./:_-]", subject) else "the "
    return f"What {'are' if m.group(2) == 'are' else 'is'} {article}{subject}?", "definition"


def en_step(sentence: str, heading: str) -> tuple[str, str] | None:
    """"To do X, run Y." -> "How do I do X?"; an imperative step under a heading -> "How do I <heading>?" """
    m = _TO_EN_RE.match(sentence)
    if m:
        return f"How do I {_strip_end(m.group(1))}?", "step"
    first = sentence.split(" ", 1)[0].lower()
    if first in _IMPERATIVE_EN and heading and 2 <= len(heading.split()) <= 10:
        return f"What should I do for {_strip_end(heading)}?", "step"
    return None


def en_command(sentence: str, heading: str) -> tuple[str, str] | None:
    """"The apt-get command installs ..." -> "What does the apt-get command do?" """
    m = _CMD_EN_RE.match(_strip_end(sentence))
    if not m or m.group(1).lower() in ("this", "that", "the", "each", "every", "a", "an"):
        return None
    return f"What does the {m.group(1)} {m.group(2)} do?", "command"


def en_cloze(sentence: str, heading: str, skip_names: frozenset[str] = NAME_SKIP) -> tuple[str, str] | None:
    """The clause holding an answer span (a path, an option, an ALL-CAPS name) with the span asked for:
    "Rules are found in /etc/udev/rules.d/." -> "Rules are found in which directory?"; command lines and
    code are skipped."""
    body = _strip_end(sentence)
    if _CODE_RE.search(body):
        return None
    for regex, kind, joined in _SPAN_KINDS:
        for m in regex.finditer(body):
            span, start, end = m.group(1), m.start(1), m.end(1)
            if kind == "name" and span.split()[0] in skip_names:
                continue
            while more := joined.match(body, end):  # ask for all of "X and Y" / "X, Y or Z"
                end = more.end(1)
            plural = end != m.end(1)
            if kind == "path":
                what = ("which directories" if plural else "which directory") if span.endswith("/") else (
                    "which files" if plural else "which file")
            else:
                what = "which " + ("option" if kind == "option" else "name") + ("s" if plural else "")
            rest = body[end:]
            if rest.startswith((" option", " file", " directory", " command")):
                what = "which"
            # keep the clause around the span (split at ; : and ", "), unless that leaves too little
            left = re.split(r"[;:]\s|,\s", body[:start])[-1]
            right = re.split(r"[;:]\s|,\s", rest)[0]
            q = (left + what + right).strip(" ,;:")
            if len(terms(q)) < 3:
                q = (body[:start] + what + rest).strip(" ,;:")
            if len(q) > 160 or len(terms(q)) < 3:
                return None
            return q[0].upper() + q[1:] + "?", "cloze"
    return None


def en_keywords(sentence: str, heading: str) -> tuple[str, str] | None:
    """Fallback: "What does the documentation say about <2-3 rare terms>?" (a few phrasings, picked by a
    hash of the sentence so the same sentence always gets the same question)."""
    words = [t for t in dict.fromkeys(terms(sentence)) if len(t) > 3 and not t.isdigit()]
    if len(words) < 3:
        return None
    key = sorted(words, key=lambda w: (-len(w), w))[:3]
    key = [w for w in words if w in key]  # keep sentence order
    where = f" in the section on {_strip_end(heading)}" if heading and len(heading) < 60 else ""
    frame = _KEYWORD_FRAMES_EN[zlib.crc32(sentence.encode("utf-8")) % len(_KEYWORD_FRAMES_EN)]
    return frame.format(terms=" ".join(key), where=where), "keywords"


def zh_number(sentence: str, heading: str) -> tuple[str, str] | None:
    m = _NUM_ZH_RE.search(sentence)
    if not m:
        return None
    unit = m.group(2)
    if unit == "年" and float(m.group(1)) >= 1000:  # a calendar year, not a duration
        return None
    q = sentence[: m.start()] + ("多少" if unit in ("%", "GB", "MB") else "多少" + unit) + sentence[m.end():]
    return _strip_end(q) + "？", "number"


def zh_definition(sentence: str, heading: str) -> tuple[str, str] | None:
    m = _DEF_ZH_RE.match(_strip_end(sentence))
    if not m or m.group(1).strip() in ("这", "那", "它", "这个", "那个", "其"):
        return None
    return f"什么是{m.group(1).strip()}？", "definition"


def zh_step(sentence: str, heading: str) -> tuple[str, str] | None:
    m = _STEP_ZH_RE.match(_strip_end(sentence))
    if not m:
        return None
    return f"如何{m.group(1).strip()}？", "step"


def zh_keywords(sentence: str, heading: str) -> tuple[str, str] | None:
    words = [t for t in dict.fromkeys(terms(sentence)) if len(t) >= 2]
    if len(words) < 3:
        return None
    key = sorted(words, key=lambda w: (-len(w), w))[:3]
    key = [w for w in words if w in key]
    return f"关于{'、'.join(key)}，文档是怎么说的？", "keywords"


TEMPLATES: dict[str, list[Template]] = {
    "en": [en_number, en_definition, en_step, en_command, en_cloze, en_keywords],
    "zh": [zh_number, zh_definition, zh_step, zh_keywords],
}


def questions_for(sentence: str, heading: str, lang: str,
                  skip_names: frozenset[str] = NAME_SKIP) -> list[tuple[str, str]]:
    """Every template question for ``sentence`` (specific templates first, the keyword fallback last);
    ``skip_names``: ALL-CAPS words the cloze template never asks for."""
    sentence = _clean(sentence)
    out: list[tuple[str, str]] = []
    for template in TEMPLATES.get(lang, TEMPLATES["en"]):
        got = en_cloze(sentence, heading, skip_names) if template is en_cloze else template(sentence, heading)
        if got is not None:
            out.append(got)
    return out
