"""Page furniture: running headers and footers, page numbers and table-of-contents lines of paged text.

Detected per document from the pages themselves, never from a list of known strings:

* a line in the top or bottom zone of a page (its first or last :data:`ZONE` lines) whose text, with
  its numbers blanked, recurs in that zone on at least :data:`REPEAT_SHARE` of the pages
  (``Debian 新维护者手册 7 / 57``, ``Debian Developer's Reference, Release 12.18``, a bare ``12``);
* a zone line whose first or last token is a number running with the page index (``5.6. Uploading a
  package 33`` on one page, ``34 Chapter 5. Managing Packages`` on the next, ``xii``): the same offset
  on at least :data:`RUN_SHARE` of the pages. (A slide deck whose titles end in the slide number,
  "Step 1" ... "Step 9", looks the same and loses those title lines.)
* table-of-contents lines with dot leaders (``1.1 Debian 的社会驱动力 . . . . . 1``), and on a page that
  is mostly such lines, its entries without leaders too (``5 debian 目录下的其他文件 29``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

ZONE = 2
MIN_PAGES = 3
REPEAT_SHARE = 0.3
#: ... and a number must run with the page index on at least this share of the pages (and MIN_PAGES)
RUN_SHARE = 0.2
#: a page is a table of contents when at least this share of its lines have dot leaders
TOC_PAGE_SHARE = 0.4

_ROMAN = r"(?:m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3}))"
_ROMAN_RE = re.compile(rf"^{_ROMAN}$", re.IGNORECASE)
_PAGE_NO = rf"(?:\d{{1,4}}|{_ROMAN})"
_TOC_RE = re.compile(rf"^\S.*?(?:\s?[.·…․‥]){{4,}}\s*{_PAGE_NO}$", re.IGNORECASE)
_TOC_ENTRY_RE = re.compile(rf"^\S.*\s{_PAGE_NO}$", re.IGNORECASE)
_DIGITS_RE = re.compile(r"\d+")


@dataclass
class Furniture:
    """What :func:`strip_furniture` removed: counts, and the repeated lines (for logs and benchmarks)."""

    repeated: int = 0
    page_numbers: int = 0
    toc: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.repeated + self.page_numbers + self.toc


def is_toc_line(line: str) -> bool:
    """A table-of-contents entry with dot leaders and a page number."""
    return bool(_TOC_RE.match(line.strip()))


def _key(line: str) -> str:
    tokens = [("#" if _ROMAN_RE.match(t) and t else t) for t in line.lower().split()]
    return _DIGITS_RE.sub("#", " ".join(tokens))


def _numbers(line: str) -> set[int]:
    """Page-number candidates of a line: its first and last token, and N in a closing "N / M"."""
    tokens = line.split()
    candidates = tokens[:1] + tokens[-1:]
    if len(tokens) >= 3 and tokens[-2] in ("/", "of"):
        candidates.append(tokens[-3])
    values: set[int] = set()
    for token in candidates:
        token = token.strip("-–—()[]|.,")
        if token.isdigit() and len(token) <= 4 and not token.startswith("0"):
            values.add(int(token))
        elif token and (token.islower() or token.isupper()) and _ROMAN_RE.match(token):
            values.add(_roman_value(token))
    return values


def _roman_value(token: str) -> int:
    digits = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}
    total = 0
    prev = 0
    for ch in reversed(token.lower()):
        value = digits[ch]
        total += -value if value < prev else value
        prev = max(prev, value)
    return total


def _zone(lines: list[str]) -> list[int]:
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(filled[:ZONE] + filled[-ZONE:]))


def strip_furniture(pages: list[str]) -> tuple[list[str], Furniture]:
    """Remove running headers/footers, page numbers and TOC lines; returns the pages and a report."""
    split = [page.split("\n") for page in pages]
    drop = _zone_furniture(split)
    for lines, dropped in zip(split, drop, strict=True):
        dropped.update(dict.fromkeys(_toc_lines(lines, dropped), "toc"))
    report = Furniture()
    out: list[str] = []
    for lines, dropped in zip(split, drop, strict=True):
        for i, kind in sorted(dropped.items()):
            setattr(report, kind, getattr(report, kind) + 1)
            if kind != "toc" and len(report.samples) < 5 and lines[i].strip() not in report.samples:
                report.samples.append(lines[i].strip())
        out.append("\n".join(line for i, line in enumerate(lines) if i not in dropped))
    return out, report


def _zone_furniture(split: list[list[str]]) -> list[dict[int, str]]:
    """Per page, {line index: "repeated" | "page_numbers"} for the zone lines that are furniture."""
    zones = [_zone(lines) for lines in split]
    n_text = sum(1 for z in zones if z)
    drop: list[dict[int, str]] = [{} for _ in split]
    if n_text < MIN_PAGES:
        return drop
    keys: Counter[str] = Counter()
    offsets: Counter[int] = Counter()
    for index, (lines, zone) in enumerate(zip(split, zones, strict=True)):
        keys.update({_key(lines[i]) for i in zone})
        offsets.update({value - index for i in zone for value in _numbers(lines[i])})
    need = max(MIN_PAGES, math.ceil(REPEAT_SHARE * n_text))
    frequent = {k for k, c in keys.items() if c >= need and k.strip()}
    runs = {o for o, c in offsets.items() if c >= max(MIN_PAGES, math.ceil(RUN_SHARE * n_text))}
    for index, (lines, zone) in enumerate(zip(split, zones, strict=True)):
        for i in zone:
            if _key(lines[i]) in frequent:
                drop[index][i] = "repeated"
            elif any(value - index in runs for value in _numbers(lines[i])):
                drop[index][i] = "page_numbers"
    return drop


def _toc_lines(lines: list[str], dropped: dict[int, str]) -> list[int]:
    """Dot-leader lines; on a page that is mostly such lines, every entry ending in a page number."""
    filled = [i for i, line in enumerate(lines) if line.strip() and i not in dropped]
    toc = [i for i in filled if is_toc_line(lines[i])]
    if toc and len(toc) >= TOC_PAGE_SHARE * len(filled):
        toc = [i for i in filled if _TOC_ENTRY_RE.match(lines[i].strip())]
    return toc
