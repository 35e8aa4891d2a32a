"""HTML loader (beautifulsoup4 + lxml): main text, ``<title>``, one Document per h1/h2/h3 section."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kb_assistant.errors import FileTooLarge
from kb_assistant.loaders.base import finish, make_document
from kb_assistant.loaders.encoding import decode_bytes
from kb_assistant.loaders.limits import DEFAULT_LIMITS, MAX_HTML_DEPTH, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

DROP_TAGS = ("script", "style", "nav", "header", "footer", "aside", "noscript", "template", "svg",
             "iframe", "form", "button", "head")
SECTION_TAGS = {"h1", "h2", "h3"}
BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr",
    "blockquote", "pre", "h4", "h5", "h6", "figure", "figcaption", "address", "details", "summary",
    "body", "html", "hr", "caption", "tbody", "thead", "tfoot",
}


def load_html(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    data = path.read_bytes()
    markup: bytes | str = data
    if b"charset" not in data[:4096].lower():  # no declared charset: use our detector, not bs4's guess
        markup = decode_bytes(data, path.suffix.lower() or ".html")[0]
    title, sections = html_sections(markup)
    docs = [
        make_document("\n".join(lines), "html", title=title, heading=heading)
        for heading, lines in sections
    ]
    return finish(docs, "HTML page has no visible text")


def html_to_text(markup: bytes | str) -> str:
    """Visible text of an HTML fragment or page (used by the e-mail loader too)."""
    _, sections = html_sections(markup)
    return "\n".join(line for _, lines in sections for line in lines)


def html_sections(markup: bytes | str) -> tuple[str | None, list[tuple[str | None, list[str]]]]:
    """Parse ``markup`` and return ``(title, [(heading, lines), ...])``."""
    from bs4 import BeautifulSoup

    check_depth(markup)
    soup = BeautifulSoup(markup, "lxml")
    title = None
    if soup.title is not None and soup.title.string:
        title = " ".join(soup.title.string.split()) or None
    for tag in soup.find_all(DROP_TAGS):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    walker = _Walker()
    walker.visit(root, 0)
    walker.flush()
    return title, [(h, lines) for h, lines in walker.sections if lines]


def check_depth(markup: bytes | str) -> None:
    """Refuse markup nested deeper than :data:`MAX_HTML_DEPTH` before BeautifulSoup builds its tree (1M
    nested ``<div>`` took 15 s there); lxml's C parser finds out in milliseconds."""
    from lxml import etree

    parser = etree.HTMLParser(recover=True, no_network=True)
    try:  # the parse of a whole document reports the depth limit (the incremental feed does not)
        etree.fromstring(markup.encode("utf-8") if isinstance(markup, str) else markup, parser)
    except (etree.Error, ValueError):  # lxml gives up on some garbage; BeautifulSoup still reads what it can
        return
    if any("excessive depth" in e.message.lower() for e in parser.error_log):
        raise FileTooLarge(f"HTML nested more than {MAX_HTML_DEPTH} levels deep (no page needs that; "
                           "the parser's limit)")


class _Walker:
    """Depth-first walk that turns the DOM into lines, starting a new section at h1/h2/h3."""

    def __init__(self) -> None:
        self.sections: list[tuple[str | None, list[str]]] = [(None, [])]
        self.buffer: list[str] = []

    def flush(self) -> None:
        line = " ".join("".join(self.buffer).split()).rstrip(" |")
        self.buffer = []
        if line:
            self.sections[-1][1].append(line)

    def visit(self, node: Any, depth: int) -> None:
        from bs4 import Comment, NavigableString, Tag

        if depth > MAX_HTML_DEPTH + 8:
            return
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                self.buffer.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in SECTION_TAGS:
                self.flush()
                heading = " ".join(child.get_text(" ").split())
                self.sections.append((heading or None, [heading] if heading else []))
            elif name == "br":
                self.flush()
            elif name in ("td", "th"):
                self.buffer.append(" ")
                self.visit(child, depth + 1)
                self.buffer.append(" |")
            elif name in BLOCK_TAGS:
                self.flush()
                if name == "li":
                    self.buffer.append("- ")
                self.visit(child, depth + 1)
                self.flush()
            else:
                self.visit(child, depth + 1)
