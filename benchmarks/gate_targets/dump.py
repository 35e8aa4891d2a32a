# ruff: noqa  (an offline analysis script kept for the record of how a default was chosen)
"""Probe features and QA-question features of a cached generalisation KB (see analyse.py, features.py).

python benchmarks/gate_targets/dump.py pdf benchmarks/data/pdf_qa.jsonl -xlb     # -> /tmp/gate/pdf.json
"""

import json
import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from kb_assistant import KnowledgeBase
from kb_assistant.evaluation.qa import load_qa
from kb_assistant.gate import gate_features, make_probes

corpus, qa = sys.argv[1], sys.argv[2]
tag = sys.argv[3] if len(sys.argv) > 3 else "-xl"  # the --tag of the generalisation run that built the KB
kb = KnowledgeBase(ROOT / f"benchmarks/.cache/gen-current-{corpus}{tag}", create=False)
stats = kb.indexes.sparse
t = time.time()
probes = make_probes(kb.docstore, stats, 200, 0)
out = {"probes": [], "qa": []}
for p in probes:
    hits = kb.search(p.question, 5)
    out["probes"].append(
        {
            "lang": p.lang,
            "y": int(p.answerable),
            "kind": p.kind,
            "f": gate_features(p.question, hits, stats),
            "top_lang": hits[0].metadata.get("lang") if hits else None,
            "x": max([h.metadata.get("xling_score", 0) for h in hits] or [0]),
        }
    )
for split in ("tune", "test"):
    for it in load_qa(qa, split=split):
        hits = kb.search(it.question, 5)
        out["qa"].append(
            {
                "id": it.id,
                "split": split,
                "kind": getattr(it, "kind", None),
                "lang": it.lang,
                "y": int(it.answerable),
                "f": gate_features(it.question, hits, stats),
                "top_lang": hits[0].metadata.get("lang") if hits else None,
                "x": max([h.metadata.get("xling_score", 0) for h in hits] or [0]),
            }
        )
json.dump(out, open(f"/tmp/gate/{corpus}.json", "w"))
print(corpus, len(probes), time.time() - t)
