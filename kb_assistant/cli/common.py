"""What every ``kb`` sub-command shares: exit codes, output, argument types, opening a knowledge base."""

from __future__ import annotations

import argparse
import json
import logging
import re
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

logger = logging.getLogger("kb_assistant.cli")

#: what never reaches the terminal raw: C0/C1 controls and DEL (a file named "\x1b]0;..." retitles the
#: terminal or hides text), and the bidirectional overrides that reorder what is shown
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: object) -> str:
    """``text`` for a terminal: control and bidi characters shown escaped (``\\x1b``); tabs and line
    breaks kept."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def dumps(data: Any) -> str:
    """JSON for a terminal: non-ASCII text kept readable, DEL, C1 and bidi characters as ``\\u`` escapes
    (the C0 controls already are)."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def out(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text`` (made safe for the terminal)."""
    if getattr(args, "json", False):
        print(dumps(data))
    else:
        print(safe(text))


class SafeFormatter(logging.Formatter):
    """Log lines with :func:`safe` applied (file names in warnings come from the documents' folders)."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record))


def open_kb(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The knowledge base at ``--kb``; only ``create=True`` (``kb ingest``, ``kb init``) makes a new one,
    with ``--embedder`` applied. A path that is not a knowledge base fails with one line."""
    from ..knowledge_base import KnowledgeBase

    overrides: dict[str, Any] = {}
    if getattr(args, "embedder", None):
        overrides.setdefault("embedding", {})["backend"] = args.embedder
    return KnowledgeBase(args.kb, overrides or None, create=create)


def add_kb(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--kb", required=True, help="knowledge base directory")
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def _bounded(kind: type, lo: float | None, hi: float | None, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


#: argparse types with their ranges: ``-k -5`` is a usage error, not an empty answer
positive_int = _bounded(int, 1, None, "a positive integer")
count_int = _bounded(int, 0, None, "an integer >= 0")
fraction = _bounded(float, 0.0, 1.0, "a number in [0, 1]")
positive_float = _bounded(float, 0.0, None, "a number >= 0")
port_int = _bounded(int, 1, 65535, "a port number (1-65535)")
