#!/usr/bin/env python
"""Behaviour snapshot: hashes of what a refactor must not change, to compare two commits.

    python benchmarks/snapshot.py --out benchmarks/results/snapshot_before.json
    python benchmarks/snapshot.py --out benchmarks/results/snapshot_after.json --compare \
        benchmarks/results/snapshot_before.json

Recorded (no generation, so it is deterministic and fast):
  retrieval   the top-10 chunk ids and rounded scores of every dev question over the handbook KB
              (``benchmarks/.cache/kb-minilm``: en-US + zh-CN, as benchmarks/retrieval.py builds it),
              plus recall@5 / MRR@10 per kind;
  prompts     the messages the query engine would give the generator for every dev question, and the
              rendered prompt text (the generator's chat template);
  finetune    the sha256 of the 400 training examples benchmarks/finetune.py generates (seed 0) from its
              dev KB (``benchmarks/.cache/ft_dev_kb``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QA = ROOT / "benchmarks" / "data" / "debian_qa.jsonl"
CACHE = ROOT / "benchmarks" / ".cache"
CORPUS = ROOT / "benchmarks" / ".corpus"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def retrieval_snapshot(kb: Any, items: list) -> dict[str, Any]:
    from kb_assistant.evaluation import evaluate_retrieval

    tops = {}
    for it in items:
        tops[it.id] = [(h.chunk_id, round(h.score, 5)) for h in kb.search(it.question, k=10)]
    report = evaluate_retrieval(lambda q: kb.search(q, k=10), items, k=10)
    metrics = {kind: {m: round(v, 4) for m, v in vals.items() if isinstance(v, float)}
               for kind, vals in report.by_kind.items()}
    return {"sha": _sha(tops), "metrics": metrics}


def prompt_snapshot(kb: Any, items: list) -> dict[str, Any]:
    engine = kb.engine
    prompts = {}
    for it in items:
        prep = engine._prepare(it.question, None, {"answer_mode": "generate", "use_cache": False})
        if prep.answer is not None:
            prompts[it.id] = {"mode": prep.answer.mode}
            continue
        rendered = engine.generator.render(prep.messages)
        prompts[it.id] = {"messages": prep.messages,
                          "rendered_sha": hashlib.sha256(rendered.encode()).hexdigest()}
    n_prompts = sum(1 for p in prompts.values() if "messages" in p)
    return {"sha": _sha(prompts), "prompts": n_prompts, "unknown": len(prompts) - n_prompts}


def finetune_snapshot(cache: Path) -> dict[str, Any]:
    import finetune as ftb  # benchmarks/finetune.py
    from transformers import AutoTokenizer

    from kb_assistant.finetune.data import DataGenConfig, generate_examples
    from kb_assistant.finetune.evaluate import eval_evidence
    from kb_assistant.generation import default_generator_path

    tok = AutoTokenizer.from_pretrained(str(default_generator_path()))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    kb = ftb.build_kb(cache / "ft_dev_kb")
    examples, stats = generate_examples(kb, DataGenConfig(n=400, seed=0, unknown_fraction=0.12,
                                                          gold_first_fraction=0.8, answer_span="passage",
                                                          unrelated_unknown_fraction=1.0,
                                                          skip_names=ftb.HANDBOOK_LABELS),
                                        exclude_evidence=eval_evidence(QA), count_tokens=count,
                                        show_progress=False)
    text = "\n".join(json.dumps(e.to_dict(), ensure_ascii=False) for e in examples)
    kb.close()
    return {"sha": hashlib.sha256(text.encode()).hexdigest(), "examples": len(examples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="an earlier snapshot JSON: exit 1 when a hash differs")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--cache", default=str(CACHE), help="where the knowledge bases are built (re-used)")
    args = ap.parse_args()

    import retrieval as rb  # benchmarks/retrieval.py

    from kb_assistant.evaluation import load_qa

    items = load_qa(QA)
    cache = Path(args.cache)
    kb = rb.build_kb("minilm", CORPUS, cache)
    record = {"retrieval": retrieval_snapshot(kb, items), "prompts": prompt_snapshot(kb, items)}
    kb.close()
    if not args.skip_finetune:
        record["finetune"] = finetune_snapshot(cache)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    if args.compare:
        old = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        diff = [k for k in record if k in old and record[k].get("sha") != old[k].get("sha")]
        print("differs: " + (", ".join(diff) if diff else "nothing"))
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
