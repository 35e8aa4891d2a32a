"""kb-assistant: a private, local question-answering assistant over a folder of enterprise files.

    from kb_assistant import KnowledgeBase
    kb = KnowledgeBase("my_kb")
    kb.ingest(["docs/"])
    kb.search("vpn port")

Importing this package is cheap: torch, transformers and faiss load on first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .config import KBConfig
    from .knowledge_base import KnowledgeBase
    from .shards import ShardedKnowledgeBase
    from .types import Hit, IngestReport

__all__ = ["Hit", "IngestReport", "KBConfig", "KnowledgeBase", "ShardedKnowledgeBase", "__version__"]

_LAZY = {
    "KnowledgeBase": ("knowledge_base", "KnowledgeBase"),
    "ShardedKnowledgeBase": ("shards", "ShardedKnowledgeBase"),
    "KBConfig": ("config", "KBConfig"),
    "Hit": ("types", "Hit"),
    "IngestReport": ("types", "IngestReport"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
