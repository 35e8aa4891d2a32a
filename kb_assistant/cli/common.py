"""What every ``kb`` sub-command shares: exit codes, output, opening a knowledge base."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

logger = logging.getLogger("kb_assistant.cli")


def out(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(text)


def open_kb(args: argparse.Namespace) -> Any:
    """The knowledge base at ``--kb`` (with ``--embedder`` applied for a new one)."""
    from ..knowledge_base import KnowledgeBase

    overrides: dict[str, Any] = {}
    if getattr(args, "embedder", None):
        overrides.setdefault("embedding", {})["backend"] = args.embedder
    return KnowledgeBase(args.kb, overrides or None)


def add_kb(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--kb", required=True, help="knowledge base directory")
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")
