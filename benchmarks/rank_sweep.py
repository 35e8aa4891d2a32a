#!/usr/bin/env python
"""Where the evidence ranks, per retrieval setting: recall@1, recall@5 and MRR@10 per question kind, and
hits in the question's language at rank 1, over the knowledge bases `generalisation.py` built.

    python benchmarks/generalisation.py --pipelines current --split tune     # builds the cached KBs once
    python benchmarks/rank_sweep.py --split tune --variants '[{}, {"xling_weight": 0.25}]' \
        --out benchmarks/results/tune_split/rank_sweep.json

recall@5 is what the retrieval defaults were chosen on (`crosslingual.py --sweep`); the cited passage
is mostly the first hit, so this sweep reads rank 1 too. Search only (no generator), a few seconds per
setting and corpus; every variant is a ``[retrieval]`` override of the knowledge base's own settings.
"Language at rank 1" counts English and Chinese questions only (an en→zh question's answer is Chinese).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from generalisation import CACHE, CORPORA  # noqa: E402  (benchmarks/ on the path)


def sweep(kb: Any, items: list[Any], variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from kb_assistant.evaluation.metrics import first_relevant_rank, retrieval_metrics

    def rates(ranks: list[int | None]) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v
                for k, v in retrieval_metrics(ranks, ks=(1, 5), cutoff=10).items()}

    kb.search("warm-up question", k=5)
    rows = []
    for variant in variants:
        kb.retriever.config = kb.config.merged({"retrieval": variant}).retrieval
        t0 = time.perf_counter()
        ranks: dict[str, list[int | None]] = {}
        lang1 = []
        for it in items:
            hits = kb.search(it.question, k=10)
            ranks.setdefault(it.kind, []).append(first_relevant_rank(hits, it, k=10))
            if it.kind != "cross":
                lang1.append(bool(hits) and (hits[0].metadata or {}).get("lang") == it.lang)
        every = [r for rs in ranks.values() for r in rs]
        rows.append({"variant": variant, "seconds": round(time.perf_counter() - t0, 1),
                     "all": rates(every), "lang_at_1": round(sum(lang1) / max(1, len(lang1)), 4),
                     **{kind: rates(rs) for kind, rs in sorted(ranks.items())}})
    kb.retriever.config = kb.config.retrieval
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="handbook,pdf")
    ap.add_argument("--split", default="tune", choices=("tune", "test"))
    ap.add_argument("--tag", default="", help="suffix of the cached KB folders (generalisation.py)")
    ap.add_argument("--variants", default="[{}]", help="JSON list of [retrieval] overrides ({} = as built)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from kb_assistant import KnowledgeBase
    from kb_assistant.evaluation.qa import load_qa

    variants = json.loads(args.variants)
    out: dict[str, Any] = {"split": args.split, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "results": {}}
    for corpus in args.corpora.split(","):
        kb_dir = CACHE / f"gen-current-{corpus}{args.tag}"
        if not (kb_dir / "config.toml").exists():
            sys.exit(f"{kb_dir}: not built (run generalisation.py --pipelines current --tag '{args.tag}')")
        items = [it for it in load_qa(CORPORA[corpus]["qa"], split=args.split) if it.answerable]
        kb = KnowledgeBase(kb_dir)
        try:
            out["results"][corpus] = rows = sweep(kb, items, variants)
        finally:
            kb.close()
        for row in rows:
            kinds = " ".join(f"{k} {row[k]['recall@1']:.2f}/{row[k]['recall@5']:.2f}/{row[k]['mrr@10']:.3f}"
                             for k in ("en", "zh", "cross") if k in row)
            print(f"{corpus} {json.dumps(row['variant'])}: mrr {row['all']['mrr@10']:.3f}, "
                  f"lang@1 {row['lang_at_1']:.2f} | r@1/r@5/mrr {kinds}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
