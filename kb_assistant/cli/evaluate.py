"""`kb eval retrieval|answers` and `kb calibrate`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..evaluation.qa import SPLITS
from .common import EXIT_OK, dumps, fraction, open_kb, positive_int


def _setup_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["retrieval", "answers"])
    p.add_argument("--kb", required=True, help="knowledge base directory")
    p.add_argument("--qa", required=True, help="QA file (JSONL)")
    p.add_argument("--split", choices=SPLITS, help="only the questions of this frozen split of the QA file")
    p.add_argument("-k", type=positive_int, default=10, help="hits per question (retrieval)")
    p.add_argument("--group", action="append", metavar="NAME", help="caller's access groups")
    p.add_argument("--limit", type=positive_int, help="only the first N questions (answers)")
    p.add_argument("--adapter", help="LoRA adapter for the generator (answers)")
    p.add_argument("--json", action="store_true")


def _run_eval(args: argparse.Namespace) -> int:
    kb = open_kb(args)
    if args.what == "retrieval":
        from ..evaluation.retrieval_eval import evaluate_kb

        report: Any = evaluate_kb(kb, args.qa, k=args.k, groups=args.group, split=args.split)
    else:
        from ..evaluation.answers_eval import evaluate_kb_answers

        if args.adapter:
            kb.adapter = args.adapter
        report = evaluate_kb_answers(kb, args.qa, groups=args.group, limit=args.limit,
                                     show_progress=not args.json, split=args.split)
    print(dumps(report.to_dict()) if args.json else report.format_table())
    return EXIT_OK


def _setup_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kb", required=True, help="knowledge base directory")
    p.add_argument("--qa", required=True, help="QA file with answerable and unanswerable questions")
    p.add_argument("--split", choices=SPLITS, help="fit on this frozen split only (normally: tune)")
    from ..evaluation.metrics import MAX_FALSE_UNKNOWN, TARGET_UNKNOWN_RECALL

    p.add_argument("--target-unknown-recall", type=fraction, default=TARGET_UNKNOWN_RECALL,
                   help="share of unanswerable questions the gate must refuse "
                        f"(default {TARGET_UNKNOWN_RECALL})")
    p.add_argument("--max-false-unknown", type=fraction, default=MAX_FALSE_UNKNOWN,
                   help="largest share of answerable questions the gate may refuse, when a threshold "
                        f"meets both targets (default {MAX_FALSE_UNKNOWN})")
    p.add_argument("--json", action="store_true")


def _run_calibrate(args: argparse.Namespace) -> int:
    from ..evaluation.retrieval_eval import calibrate
    from ..knowledge_base import CONFIG_FILE

    kb = open_kb(args)
    threshold = calibrate(kb, args.qa, target_unknown_recall=args.target_unknown_recall,
                          max_false_unknown=args.max_false_unknown, split=args.split)
    out = {"unknown_threshold": threshold, "config": str(kb.path / CONFIG_FILE)}
    print(json.dumps(out) if args.json else
          f"unknown_threshold = {threshold:.4f} (saved in {kb.path / CONFIG_FILE})")
    return EXIT_OK


COMMANDS = [
    ("eval", "evaluate retrieval or answers on a QA file", _setup_eval, _run_eval),
    ("calibrate", "fit the score calibration and the unknown-gate threshold", _setup_calibrate,
     _run_calibrate),
]
