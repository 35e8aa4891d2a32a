"""``kb tune``: the knowledge base fine-tunes its own generator within a time budget.

    kb tune --kb DIR [--budget-minutes M] [--steps N] [--seed S] [--no-adopt] [--json] [-q]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK, add_kb, open_kb, out


def _setup(p: argparse.ArgumentParser) -> None:
    from ..tuning import TuneConfig

    defaults = TuneConfig()
    add_kb(p)
    p.add_argument("--budget-minutes", type=float, default=defaults.budget_minutes, metavar="M",
                   help=f"wall-clock budget of the whole run (default {defaults.budget_minutes:g})")
    p.add_argument("--steps", type=int, default=defaults.steps, metavar="N",
                   help=f"training steps at most (default {defaults.steps}; the budget may allow fewer)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="held-out share, probes, data, training")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-adopt", action="store_true",
                   help="measure and report only: never make the adapter the knowledge base's default")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _run(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    options: dict[str, Any] = {"budget_minutes": args.budget_minutes, "steps": args.steps, "seed": args.seed,
                               "adopt": not args.no_adopt}
    if args.threads:
        options["threads"] = args.threads
    try:
        report = kb.tune(show_progress=not args.quiet and sys.stderr.isatty(), **options)
    finally:
        kb.close()
    where = kb.path / report.adapter / "tune_report.json"
    out(args, report.to_dict(), f"{report.table()}\n(report: {where}; {report.timings['total']:.0f} s)")
    return EXIT_OK


COMMANDS = [
    ("tune", "fine-tune the generator on the knowledge base itself, adopt it when it measures better",
     _setup, _run),
]
