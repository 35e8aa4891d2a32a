#!/usr/bin/env python
"""`kb tune` measured: the time a run takes, and what it lifts on questions it never saw.

    python benchmarks/tune.py --corpus sample                    # the small CPU run: kb tune on the sample KB
    python benchmarks/tune.py --corpus pdf --steps 160 --budget-minutes 600      # the lift on the PDF manuals
    flock /tmp/kb-bench.lock python benchmarks/tune.py ...       # timings: alone on the machine

Per corpus (``sample``: examples/sample_kb with examples/sample_qa.jsonl; ``pdf``: the five PDF manuals
of scripts/get_pdf_corpus.sh with the **test** split of benchmarks/data/pdf_qa.jsonl — a corpus the tune
settings were not developed on; ``handbook``: the Debian handbook):

1. a knowledge base built once with the defaults (cached: benchmarks/.cache/tune-<corpus>-base; its
   unknown gate fits itself after the ingest) and copied to a fresh run folder;
2. **before**: every QA question of the split asked through the knowledge base (answer cache off,
   streamed), scored as benchmarks/generalisation.py scores it (facts = every answer keyword, ...);
3. ``kb tune --kb RUN --json`` in a subprocess, timed end to end (model loading included);
4. **after**: the same questions over the tuned knowledge base (its adopted adapter and gate); when the
   adapter was not adopted, also with the adapter forced (``KnowledgeBase(adapter=...)``) for reference.

The QA questions never reach `kb tune`: it trains and decides on probes it makes from its own chunks.
Writes benchmarks/results/tune_<corpus>.json (load average before and after recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from generalisation import CORPORA, ask_and_record, score  # noqa: E402  (benchmarks/ on the path)

CACHE = ROOT / "benchmarks" / ".cache"
CORPORA = {**CORPORA, "sample": {"qa": ROOT / "examples" / "sample_qa.jsonl",
                                 "paths": [ROOT / "examples" / "sample_kb"], "include": None}}


def build(corpus: str, path: Path) -> dict[str, Any]:
    from kb_assistant import KnowledgeBase

    spec = CORPORA[corpus]
    missing = [p for p in spec["paths"] if not p.exists()]
    if missing:
        sys.exit(f"corpus missing ({missing[0]}): scripts/get_pdf_corpus.sh / scripts/make_sample_kb.py")
    kb = KnowledgeBase(path)
    try:
        if kb.documents():
            return {"reused": True, "chunks": kb.stats()["chunks"]}
        t = time.perf_counter()
        report = kb.ingest([str(p) for p in spec["paths"]], include=spec["include"], show_progress=False)
        return {"seconds": round(time.perf_counter() - t, 1), "summary": report.summary(),
                "chunks": kb.stats()["chunks"], "gate_fitted": bool(kb.config.gate.fitted)}
    finally:
        kb.close()


def ask_all(kb_dir: Path, items: list[Any], adapter: str | None = None) -> dict[str, Any]:
    """Every question through generalisation.py's :func:`ask_and_record`, and the adapter in use."""
    from kb_assistant import KnowledgeBase

    kb = KnowledgeBase(kb_dir, adapter=adapter)
    records = ask_and_record(kb, [(it.id, it.question) for it in items])
    adapter_used = str(kb.engine.generator.adapter or "") or None
    kb.close()
    return {"records": records, "adapter": adapter_used}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="sample")
    ap.add_argument("--split", choices=("tune", "test", "all"), default="test",
                    help="QA split asked before and after (the sample QA file has none: all)")
    ap.add_argument("--budget-minutes", type=float, help="kb tune --budget-minutes (default: kb tune's)")
    ap.add_argument("--steps", type=int, help="kb tune --steps (default: kb tune's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 on a shared, busy machine)")
    ap.add_argument("--skip-qa", action="store_true", help="time kb tune only (no before/after QA run)")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/tune_<corpus>.json")
    args = ap.parse_args()

    import torch

    from kb_assistant.evaluation.qa import load_qa

    torch.set_num_threads(args.threads)
    split = None if args.split == "all" or args.corpus == "sample" else args.split
    items = load_qa(CORPORA[args.corpus]["qa"], split=split)
    base, run = CACHE / f"tune-{args.corpus}-base", CACHE / f"tune-{args.corpus}-run"
    record: dict[str, Any] = {"corpus": args.corpus, "split": split or "all", "questions": len(items),
                              "load_before": os.getloadavg(), "cpu_count": os.cpu_count(),
                              "torch_threads": args.threads,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record["build"] = build(args.corpus, base)
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base, run, ignore=shutil.ignore_patterns("adapters", ".lock"))
    if not args.skip_qa:
        t = time.perf_counter()
        before = ask_all(run, items)
        record["before"] = {"seconds": round(time.perf_counter() - t, 1), "scores": score(items, before),
                            "records": before["records"]}
        print("before:", json.dumps(record["before"]["scores"]["all"]), flush=True)

    cmd = [sys.executable, "-m", "kb_assistant", "tune", "--kb", str(run), "--json", "-q",
           "--seed", str(args.seed), "--threads", str(args.threads)]
    cmd += ["--budget-minutes", str(args.budget_minutes)] if args.budget_minutes else []
    cmd += ["--steps", str(args.steps)] if args.steps else []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    record["tune"] = {"command": " ".join(cmd[1:]), "seconds_end_to_end": round(time.perf_counter() - t, 1),
                      "load_after": os.getloadavg(), "returncode": proc.returncode}
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        record["tune"]["stderr"] = proc.stderr[-3000:]
    else:
        report = json.loads(proc.stdout)
        record["tune"]["report"] = {k: v for k, v in report.items() if k != "probes"}
        print(f"kb tune: {report['reason']} ({record['tune']['seconds_end_to_end']:.0f} s end to end)",
              flush=True)
        if not args.skip_qa:
            t = time.perf_counter()
            after = ask_all(run, items)
            record["after"] = {"seconds": round(time.perf_counter() - t, 1), "adapter": after["adapter"],
                               "scores": score(items, after), "records": after["records"]}
            print("after:", json.dumps(record["after"]["scores"]["all"]), flush=True)
            if not report["adopted"]:
                forced = ask_all(run, items, adapter=str(run / report["adapter"]))
                scores = score(items, forced)
                record["after_adapter_forced"] = {"scores": scores, "records": forced["records"]}
                print("adapter forced:", json.dumps(scores["all"]))
    record["load_after"] = os.getloadavg()
    out = args.out or ROOT / "benchmarks" / "results" / f"tune_{args.corpus}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0 if not proc.returncode else 1


if __name__ == "__main__":
    sys.exit(main())
