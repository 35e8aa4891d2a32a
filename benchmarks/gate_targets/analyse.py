# ruff: noqa  (an offline analysis script kept for the record of how a default was chosen)
"""How [gate] max_false_unknown was chosen on the tune splits: replay the probe fit offline.

python benchmarks/gate_targets/dump.py pdf benchmarks/data/pdf_qa.jsonl        # -> /tmp/gate/pdf.json
python benchmarks/gate_targets/dump.py handbook benchmarks/data/debian_qa.jsonl
python benchmarks/gate_targets/analyse.py tune     # results/tune_split/gate_targets.txt
"""

import json
import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from kb_assistant.evaluation.metrics import best_threshold
from kb_assistant.gate.model import GateModel

FEATS = ["dense_top", "bm25_top", "coverage", "absent_name"]


def fit(rows, feats, tur, mfu):
    models = {}
    for lang in sorted({r["lang"] for r in rows}):
        rr = [r for r in rows if r["lang"] == lang]
        x = np.array([[r["f"][k] if k != "x" else r["x"] for k in feats] for r in rr])
        y = np.array([r["y"] for r in rr], float)
        m = GateModel.fit(x, y, feats, l2=1.0)
        p = np.array([prob(m, r) for r in rr])
        thr, st = best_threshold(
            p[y == 1].tolist(), p[y == 0].tolist(), target_unknown_recall=tur, max_false_unknown=mfu
        )
        m.threshold = thr
        models[lang] = m
    return models


def prob(m, r):
    f = dict(r["f"])
    f["x"] = r["x"]
    return m.probability(f)


def lang_of(q):
    return "zh" if q["lang"] == "zh" else "en"


def evaluate(models, qa, cross_route=None):
    res = {}
    for r in qa:
        m = models.get("zh" if r["lang"] == "zh" else "en")
        ok = prob(m, r) >= m.threshold
        if (
            cross_route
            and not ok
            and r["top_lang"]
            and r["top_lang"] != ("zh" if r["lang"] == "zh" else "en")
        ):
            ok = cross_route(r)
        k = r["kind"] if r["y"] else "unans"
        res.setdefault(k, []).append(ok)
    ans = [v for k, vs in res.items() if k != "unans" for v in vs]
    return {
        "FU": round(1 - np.mean(ans), 3),
        "UNK": round(1 - np.mean(res.get("unans", [True])), 3),
        **{k: round(1 - np.mean(v), 2) for k, v in res.items() if k != "unans"},
    }


data = {c: json.load(open(f"/tmp/gate/{c}.json")) for c in ("pdf", "handbook")}
split = sys.argv[1] if len(sys.argv) > 1 else "tune"
for feats in (FEATS, FEATS + ["x"]):
    for tur, mfu in [(0.6, 0.1), (0.6, 0.05), (0.6, 0.03), (0.5, 0.05)]:
        line = []
        for c, d in data.items():
            models = fit(d["probes"], feats, tur, mfu)
            qa = [r for r in d["qa"] if r["split"] == split]
            line.append(f"{c}: {evaluate(models, qa)}")
        print(len(feats), tur, mfu, " | ".join(line))

print("--- quantile rule")


def fitq(rows, feats, q):
    models = {}
    for lang in sorted({r["lang"] for r in rows}):
        rr = [r for r in rows if r["lang"] == lang]
        x = np.array([[r["f"][k] for k in feats] for r in rr])
        y = np.array([r["y"] for r in rr], float)
        m = GateModel.fit(x, y, feats, l2=1.0)
        p = np.array([prob(m, r) for r in rr])
        m.threshold = float(np.quantile(p[y == 1], q))
        models[lang] = m
        m.info = round(float(np.mean(p[y == 0] < m.threshold)), 3)
    return models


for q in (0.02, 0.03, 0.05, 0.08):
    line = []
    for c, d in data.items():
        models = fitq(d["probes"], FEATS, q)
        qa = [r for r in d["qa"] if r["split"] == split]
        line.append(f"{c}: {evaluate(models, qa)} probeUR {[m.info for m in models.values()]}")
    print(q, " | ".join(line))
for c, d in data.items():
    for r in d["qa"]:
        if r["split"] == split and (r["kind"] == "cross" or not r["y"]):
            pass
    xs = {
        k: sorted(
            round(r["x"], 2)
            for r in d["qa"]
            if r["split"] == split and (r["kind"] if r["y"] else "unans") == k
        )
        for k in ("cross", "unans", "en", "zh")
    }
    print(c, xs)
    print(
        c,
        "probes x pos",
        np.quantile([r["x"] for r in d["probes"] if r["y"]], [0.05, 0.5]),
        "neg",
        np.quantile([r["x"] for r in d["probes"] if not r["y"]], [0.5, 0.95]),
    )
