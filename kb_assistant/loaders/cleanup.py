"""CJK text clean-up shared by the loaders: justification spaces and lines broken mid-sentence.

Typeset documents (PDFs above all, but also hard-wrapped text files and e-mails) carry what the layout
did, not what the author wrote: a justified Chinese line comes out as ``对 于 一 个 支 持多`` and a
sentence that wrapped at the margin is cut in two lines. :func:`normalize_cjk` undoes both, and leaves
alone the spaces that mean something (between CJK and Latin words, between the cells of a table row).
"""

from __future__ import annotations

import re
import unicodedata

from kb_assistant.text import CJK_NO_SPACE

#: ideographic punctuation and full-width forms: spaced like the ideographs around them
_CJK_PUNCT = "\u3000-\u303f\uff00-\uffef"
_C = f"[{CJK_NO_SPACE}{_CJK_PUNCT}]"
_SPACED = re.compile(f"(?<={_C}) +(?={_C})")
_TIGHT = re.compile(f"{_C}(?={_C})")
#: a line that ends with one of these is mid-sentence (an ideograph or a non-final mark)
_OPEN_END = re.compile(f"[{CJK_NO_SPACE}，、“‘《〈「『（]$")
#: ... and the next line continues it if it starts with an ideograph or an opening mark
_CJK_START = re.compile(f"^[{CJK_NO_SPACE}“‘《〈「『（]")
#: CJK marks that never start a line in CJK typesetting: a line starting with one continues the previous
_CLOSING_START = re.compile("^[。，、；：！？）》〉」』”’]")
_LATIN_END = re.compile(r"[A-Za-z]$")
_LATIN_START = re.compile(r"^[A-Za-z]")
_ANY_CJK = re.compile(f"[{CJK_NO_SPACE}]")

#: share of CJK-CJK neighbours that must be spaced for a line to count as letter-spaced (justified);
#: emphasis boundaries and table cells give one or two spaced pairs among many tight ones
LETTER_SPACED_SHARE = 0.4
#: a line at least this share of the full line width wrapped at the margin
FULL_LINE_SHARE = 0.8


def squeeze_cjk_spaces(line: str) -> str:
    """Remove the spaces of a letter-spaced (justified) line: ``对 于 一 个 支 持多`` -> ``对于一个支持多``.

    A line counts as letter-spaced when more than :data:`LETTER_SPACED_SHARE` of its CJK-CJK neighbours
    are separated by spaces; then every CJK-CJK space goes, and CJK-Latin spaces stay.
    """
    spaced = len(_SPACED.findall(line))
    if not spaced:
        return line
    tight = len(_TIGHT.findall(line))
    if spaced / (spaced + tight) <= LETTER_SPACED_SHARE:
        return line
    return _SPACED.sub("", line)


def display_width(text: str) -> int:
    """Columns the text takes in a monospace view: wide (CJK) characters count 2."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def full_line_width(lines: list[str]) -> int:
    """The width of a full (wrapped) line: the 90th percentile of the widths of the CJK lines."""
    widths = sorted(display_width(line) for line in lines if _ANY_CJK.search(line))
    if len(widths) < 3:
        return 0
    return widths[int(0.9 * (len(widths) - 1))]


def join_broken_lines(lines: list[str], width: int) -> list[str]:
    """Rejoin CJK lines that wrapped at the margin (a line of at least ``FULL_LINE_SHARE * width``).

    Ideograph + ideograph join without a space; ideograph + Latin word with one. Lines that end a
    sentence, start a list item or are short (headings, table rows) stay as they are.
    """
    out: list[str] = []
    for line in lines:
        prev = out[-1] if out else ""
        if prev and _CLOSING_START.match(line):
            out[-1] = prev + line
            continue
        if prev and line and width > 0 and display_width(prev) >= FULL_LINE_SHARE * width:
            if _OPEN_END.search(prev) and _CJK_START.match(line):
                out[-1] = prev + line
                continue
            if (_OPEN_END.search(prev) and _LATIN_START.match(line)) or (
                    _LATIN_END.search(prev) and _CJK_START.match(line) and _ANY_CJK.search(prev)):
                out[-1] = prev + " " + line
                continue
        out.append(line)
    return out


def normalize_cjk(text: str, width: int | None = None) -> str:
    """Squeeze letter-spaced CJK lines and rejoin lines broken in the middle of a CJK sentence.

    ``width``: the full line width of the document (see :func:`full_line_width`); None computes it from
    ``text`` itself, which is right for a whole file and too noisy for one short page.
    """
    if not _ANY_CJK.search(text):
        return text
    lines = [squeeze_cjk_spaces(line) for line in text.split("\n")]
    if width is None:
        width = full_line_width(lines)
    return "\n".join(join_broken_lines(lines, width))
