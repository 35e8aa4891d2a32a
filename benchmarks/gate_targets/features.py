# ruff: noqa  (an offline analysis script kept for the record of how a default was chosen)
"""How [gate] features gained xling_top: the probe fit replayed offline per feature set, as the knowledge base
fits it (bootstrap 25, target unknown recall 0.6, max false unknown 0.05), on each corpus' own probes, and
read on the QA tune split of the same corpus ("own") and of the other one ("x": the cross-corpus figure).

python benchmarks/gate_targets/dump.py pdf benchmarks/data/pdf_qa.jsonl -xlb      # -> /tmp/gate/pdf.json
python benchmarks/gate_targets/dump.py handbook benchmarks/data/debian_qa.jsonl -xlb
python benchmarks/gate_targets/features.py tune     # results/tune_split/gate_features.txt

"x" in a dump is the best cross-lingual cosine among the hits (the feature ``xling_top``). FU = false unknown
on the answerable questions, UNK = unknown on the unanswerable ones, then FU per question kind (%).
"""

import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from kb_assistant.gate import _bagged
from kb_assistant.gate.model import GateModel

BASE = ["dense_top", "bm25_top", "coverage", "absent_name"]
VARIANTS = {
    "before (4 features)": {"en": BASE, "zh": BASE},
    "zh without dense_top": {"en": BASE, "zh": ["bm25_top", "coverage", "absent_name"]},
    "zh: x for dense_top": {"en": BASE, "zh": ["x", "bm25_top", "coverage", "absent_name"]},
    "+ x (xling_top), adopted": {"en": BASE + ["x"], "zh": BASE + ["x"]},
    "x for dense_top": {"en": ["x", *BASE[1:]], "zh": ["x", *BASE[1:]]},
    "+ covered_top": {"en": BASE + ["covered_top"], "zh": BASE + ["covered_top"]},
    "+ absent": {"en": BASE + ["absent"], "zh": BASE + ["absent"]},
    "+ lang_match": {"en": BASE + ["lang_match"], "zh": BASE + ["lang_match"]},
    "+ dense_gap": {"en": BASE + ["dense_gap"], "zh": BASE + ["dense_gap"]},
    "+ x + lang_match": {"en": BASE + ["x", "lang_match"], "zh": BASE + ["x", "lang_match"]},
    "+ x + dense_gap": {"en": BASE + ["x", "dense_gap"], "zh": BASE + ["x", "dense_gap"]},
}


def value(r, k):
    return r["x"] if k == "x" else r["f"][k]


def fit(rows, feats_by_lang, tur=0.6, mfu=0.05, boot=25):
    models = {}
    targets = {"target_unknown_recall": tur, "max_false_unknown": mfu}
    for lang in sorted({r["lang"] for r in rows}):
        feats = feats_by_lang[lang]
        rr = [r for r in rows if r["lang"] == lang]
        x = np.array([[value(r, k) for k in feats] for r in rr])
        y = np.array([r["y"] for r in rr], float)
        base = GateModel.fit(x, y, feats, l2=1.0)
        models[lang] = _bagged(base, x, y, 1.0, boot, random.Random(0), targets)
    return models


def prob(m, r):
    return m.probability({**r["f"], "x": r["x"]})


def evaluate(models, qa):
    res = {}
    for r in qa:
        m = models["zh" if r["lang"] == "zh" else "en"]
        res.setdefault(r["kind"] if r["y"] else "unans", []).append(prob(m, r) >= m.threshold)
    ans = [v for k, vs in res.items() if k != "unans" for v in vs]
    kinds = " ".join(f"{k} {100 * (1 - np.mean(v)):.0f}" for k, v in sorted(res.items()) if k != "unans")
    return f"FU {100 * (1 - np.mean(ans)):4.1f} UNK {100 * (1 - np.mean(res['unans'])):5.1f} ({kinds})"


split = sys.argv[1] if len(sys.argv) > 1 else "tune"
data = {c: json.load(open(f"/tmp/gate/{c}.json")) for c in ("pdf", "handbook")}
qa = {c: [r for r in d["qa"] if r["split"] == split] for c, d in data.items()}
print(f"split: {split}; own = the corpus' own gate, x = the other corpus' gate")
for name, feats in VARIANTS.items():
    ms = {c: fit(d["probes"], feats) for c, d in data.items()}
    print(f"{name:26s} own  pdf {evaluate(ms['pdf'], qa['pdf'])} | handbook {evaluate(ms['handbook'], qa['handbook'])}")
    print(f"{'':26s} x    pdf {evaluate(ms['handbook'], qa['pdf'])} | handbook {evaluate(ms['pdf'], qa['handbook'])}")
