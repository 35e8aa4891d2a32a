"""The ``kb`` command: a thin layer over the public Python API.

Exit status: 0 success; 1 error; 2 usage error; 3 ``kb ingest`` finished but some files failed
(they are listed; everything else was ingested). Only ``kb ingest`` and ``kb init`` create a knowledge
base; every other command fails with one line on a path that is not one. Text from documents and file
names is printed with control characters escaped (:func:`~kb_assistant.cli.common.safe`).

Sub-commands live in one module each (``documents``, ``answers``, ``evaluate``, ``finetune``,
``tune``, ``models``, ``serve``); each exports ``COMMANDS``: ``(name, help, setup(parser), run(args) ->
exit code)``, and :data:`COMMANDS` below is the one table of them all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import KBError
from ..store.docstore import damaged, is_damage
from . import answers, documents, evaluate, finetune, maintenance, models, serve, tune
from .common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, SafeFormatter, safe

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "build_parser", "main"]

COMMANDS = [*documents.COMMANDS, *maintenance.COMMANDS, *answers.COMMANDS, *evaluate.COMMANDS,
            *finetune.COMMANDS, *tune.COMMANDS, *models.COMMANDS, *serve.COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kb",
                                     description="Private, local question answering over your files.")
    parser.add_argument("--version", action="version", version=f"kb-assistant {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, setup, run in COMMANDS:
        p = sub.add_parser(name, help=help_text)
        setup(p)
        p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False):  # the models' own loading bars too (read when transformers loads)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    try:
        return int(args.func(args))
    except KBError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a docstore damaged after it opened: one line, not a traceback
        if not is_damage(exc):
            raise
        print(f"error: {safe(damaged(getattr(args, 'kb', '?'), exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
