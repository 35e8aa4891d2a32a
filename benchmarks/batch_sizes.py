"""Seconds per answer of ``Generator.generate_batch`` by batch size, on prompts made by the query engine
from the sample knowledge base (what ``[server] batch_max`` is chosen on).

    python benchmarks/batch_sizes.py --sizes 1 4 8 16 --json benchmarks/results/batch_sizes.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from server_load import DEFAULT_KB, SAMPLE_QA, ensure_kb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--prompts", type=int, default=16, help="prompts generated at each size")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kb_assistant import KnowledgeBase

    kb = KnowledgeBase(ensure_kb(DEFAULT_KB))
    engine = kb.engine
    chats = []
    for line in SAMPLE_QA.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if q.get("lang", "en") != "en":
            continue
        prep = engine._prepare(q["question"], None, {"use_cache": False})
        if prep.answer is None and prep.messages:
            chats.append(prep.messages)
    chats = (chats * args.prompts)[: args.prompts]
    gen = engine.generator.warm_up()
    cfg = prep.gen_config
    gen.generate_batch(chats[:2], cfg)  # warm-up
    tokens = [gen.count_tokens(gen.render(c)) for c in chats]
    out = {"prompts": len(chats), "prompt_tokens_mean": round(sum(tokens) / len(tokens), 1),
           "config": {"max_new_tokens": cfg.max_new_tokens, "max_sentences": cfg.max_sentences},
           "load_average_start": os.getloadavg(), "cpus": os.cpu_count(), "sizes": {}}
    for size in args.sizes:
        n = len(chats) if size > 1 else min(len(chats), 4)
        t0 = time.perf_counter()
        for i in range(0, n, size):
            gen.generate_batch(chats[i:i + size], cfg) if size > 1 else gen.generate(chats[i], cfg)
        per = (time.perf_counter() - t0) / n
        out["sizes"][size] = {"s_per_answer": round(per, 3), "answers_per_min": round(60 / per, 1)}
        print(f"batch {size:>3}: {per:.2f} s per answer, {60 / per:.1f} answers/min", flush=True)
    out["load_average_end"] = os.getloadavg()
    kb.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
