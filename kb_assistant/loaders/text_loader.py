"""Plain text and Markdown loaders (any common encoding; Markdown split by headings; hard-wrapped CJK lines
rejoined)."""

from __future__ import annotations

import re
from pathlib import Path

from kb_assistant.loaders.base import finish, make_document
from kb_assistant.loaders.cleanup import full_line_width, normalize_cjk
from kb_assistant.loaders.encoding import decode_bytes
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

_ATX_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(```|~~~)")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def load_txt(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    text, encoding = decode_bytes(path.read_bytes(), path.suffix.lower() or ".txt")
    return finish([make_document(normalize_cjk(text), "txt", encoding=encoding)], "text file has no text")


def load_markdown(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    text, encoding = decode_bytes(path.read_bytes(), path.suffix.lower() or ".md")
    sections = split_markdown(text)
    width = full_line_width(text.splitlines())  # of the whole file: one section is too short to tell
    title = next((h for level, h, _ in sections if level == 1), None)
    docs = []
    pending = ""
    for _, heading, body in sections:
        if heading is not None and not body.partition("\n")[2].strip():
            pending += body + "\n\n"  # a heading directly followed by another: carry it forward
            continue
        docs.append(make_document(normalize_cjk(pending + body, width), "md", title=title, heading=heading,
                                  encoding=encoding))
        pending = ""
    if pending:
        docs.append(make_document(normalize_cjk(pending, width), "md", title=title, encoding=encoding))
    return finish(docs, "Markdown file has no text")


def split_markdown(text: str) -> list[tuple[int, str | None, str]]:
    """Split Markdown into ``(level, heading, body)`` sections (headings of level 1-3; fences respected).

    The body keeps its heading line so that the text of each section stands on its own.
    """
    text = _strip_front_matter(text.replace("\r\n", "\n").replace("\r", "\n"))
    sections: list[tuple[int, str | None, list[str]]] = [(0, None, [])]
    in_fence = False
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX_RE.match(line)
        if heading and len(heading.group(1)) <= 3:
            title = heading.group(2).strip()
            sections.append((len(heading.group(1)), title, [title]))
            continue
        setext = None if in_fence else _SETEXT_RE.match(line)
        current = sections[-1][2]
        if setext and current and current[-1].strip() and i > 0 and not _is_list_or_table(current[-1]):
            title = current.pop().strip()
            sections.append((1 if setext.group(1)[0] == "=" else 2, title, [title]))
            continue
        current.append(line)
    return [(level, heading, "\n".join(body)) for level, heading, body in sections]


def _is_list_or_table(line: str) -> bool:
    stripped = line.lstrip()
    return stripped.startswith(("-", "*", "+", "|", ">")) or stripped[:2].rstrip(".").isdigit()


def _strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[end + 5:]
    return text
