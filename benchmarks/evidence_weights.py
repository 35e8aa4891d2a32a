#!/usr/bin/env python
"""How evidence sentences are chosen: ``[query] evidence_dense_weight`` swept on the *tune* splits of both
dev corpora, extractive answers only (the setting applies to answers quoted without the generator; no
generator runs, so a sweep takes a minute or two).

    python benchmarks/evidence_weights.py --weights 0 0.3 0.5 0.7 1 \
        --json benchmarks/results/tune_split/evidence_weights.json

Opens the knowledge bases :mod:`generalisation` built (``benchmarks/.cache/gen-current-<corpus><tag>``),
asks every answerable question of the split with ``answer_mode = extractive`` and the answer cache off, once
per weight, and reports per corpus and question kind: answers holding the expected facts, the cited
passage holding the evidence, answers in the question's language (or marked quotes), and the quote
length. Unknown answers count as misses at every weight (the gate does not depend on the weight).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import CACHE, CORPORA  # noqa: E402


def sweep(corpus: str, kb_dir: Path, weights: list[float], split: str) -> dict:
    from kb_assistant import KnowledgeBase
    from kb_assistant.evaluation.metrics import hit_matches
    from kb_assistant.evaluation.qa import load_qa
    from kb_assistant.evaluation.text_metrics import keyword_hit
    from kb_assistant.text import detect_lang

    items = [it for it in load_qa(CORPORA[corpus]["qa"], split=split) if it.answerable]
    kb = KnowledgeBase(kb_dir)
    out: dict = {}
    try:
        for w in weights:
            engine = kb.engine_with({"query": {"evidence_dense_weight": w, "answer_mode": "extractive"}})
            rows = []
            t0 = time.perf_counter()
            for it in items:
                a = engine.ask(it.question, use_cache=False)
                facts = bool(it.answer_keywords) and (keyword_hit(a.text, it.answer_keywords) == 1.0 or (
                    bool(it.answer_keywords_zh) and keyword_hit(a.text, it.answer_keywords_zh) == 1.0))
                cite = not a.unknown and any(hit_matches(h, it) for h in a.citations.values())
                rows.append({"kind": it.kind, "unknown": a.unknown, "facts": facts, "cite": cite,
                             "chars": len(a.text), "lang_ok": a.unknown or detect_lang(a.text) == it.lang
                             or a.text.startswith(("(quoted from", "（引自"))})
            seconds = time.perf_counter() - t0

            def group(sel: list[dict]) -> dict:
                answered = [r for r in sel if not r["unknown"]]
                return {"n": len(sel), "facts": round(sum(r["facts"] for r in sel) / max(1, len(sel)), 4),
                        "cite_ok": round(sum(r["cite"] for r in answered) / max(1, len(answered)), 4),
                        "lang_ok": round(sum(r["lang_ok"] for r in sel) / max(1, len(sel)), 4),
                        "chars_median": statistics.median([r["chars"] for r in answered]) if answered else 0}
            res = {"all": group(rows), "seconds": round(seconds, 1)}
            for kind in sorted({r["kind"] for r in rows}):
                res[kind] = group([r for r in rows if r["kind"] == kind])
            out[str(w)] = res
            print(f"{corpus} w={w}: {json.dumps(res)}", flush=True)
    finally:
        kb.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    ap.add_argument("--corpora", default="handbook,pdf")
    ap.add_argument("--split", default="tune", choices=("tune", "test"))
    ap.add_argument("--tag", default="-xl", help="suffix of the cached knowledge base folders")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    record = {"split": args.split, "weights": args.weights, "load_before": os.getloadavg(), "corpora": {}}
    for corpus in args.corpora.split(","):
        kb_dir = CACHE / f"gen-current-{corpus}{args.tag}"
        record["corpora"][corpus] = sweep(corpus, kb_dir, args.weights, args.split)
    record["load_after"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
