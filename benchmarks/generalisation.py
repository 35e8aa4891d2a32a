#!/usr/bin/env python
"""Answers that hold on documents nobody tuned them on: both dev corpora, test splits, today's pipeline
against this one, in one run.

    scripts/get_debian_handbook.sh && scripts/get_pdf_corpus.sh
    git worktree add /tmp/kb-baseline c45a8ad          # "today's pipeline": the code before issue #13
    python benchmarks/generalisation.py --baseline /tmp/kb-baseline [--split test] [--out FILE]

For each pipeline (``baseline``: another checkout of kb-assistant given by ``--baseline``; ``current``:
this checkout) and each corpus (``handbook``: the Debian Administrator's Handbook, HTML, en-US + zh-CN,
``benchmarks/data/debian_qa.jsonl``; ``pdf``: the PDF manuals, ``benchmarks/data/pdf_qa.jsonl``) a
subprocess builds (once, cached under ``benchmarks/.cache/gen-<pipeline>-<corpus>``) a knowledge base
with the pipeline's defaults (a reused one of the current pipeline gets today's ``[query]`` defaults, as a
fresh build would), then asks every question of the split (answer cache off, streamed) and
searches it (recall@5 per kind). The current pipeline's knowledge bases fit their own unknown gate when
ingested (no labelled data); ``--cross`` also measures each corpus with the *other* corpus' fitted gate.

Per corpus and pipeline: unknown on unanswerable, false unknown on answerable, answers holding the
expected facts (every answer keyword; for English questions about Chinese-only text the English
keywords, or the Chinese ones when the answer is a marked Chinese quote), cited passage holds the
evidence (and, separately, counting the parallel page of the other language's book:
``parallel_page_matches``), answers in the question's language, recall@5 en / zh / en→zh, answer
p50 / p95, first streamed token p50, the share of answers the generator wrote. Raw JSON:
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
CORPORA = {
    "handbook": {"qa": ROOT / "benchmarks" / "data" / "debian_qa.jsonl",
                 "paths": [ROOT / "benchmarks" / ".corpus" / lang for lang in ("en-US", "zh-CN")],
                 "include": ["*.html"]},
    "pdf": {"qa": ROOT / "benchmarks" / "data" / "pdf_qa.jsonl",
            "paths": [ROOT / "benchmarks" / ".corpus" / "pdf"], "include": ["*.pdf"]},
}


# ------------------------------------------------------------------ child: one pipeline, one corpus
def child(args: argparse.Namespace) -> int:
    """Build or open the knowledge base, then search and ask every question; only public APIs that every
    pipeline version has (``ingest``, ``search``, ``ask_stream``), so scoring happens in the parent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from kb_assistant import KnowledgeBase

    corpus = CORPORA[args.corpus]
    kb = KnowledgeBase(args.kb)
    t0 = time.perf_counter()
    if not kb.documents():
        report = kb.ingest([str(p) for p in corpus["paths"]], include=corpus["include"], show_progress=False)
        build = {"seconds": round(time.perf_counter() - t0, 1), "summary": report.summary(),
                 "failed": [f"{f.path}: {f.reason}" for f in report.failed],
                 "timings": {k: round(v, 2) for k, v in (report.timings or {}).items()}}
    else:
        build = {"reused": True}
    overrides = json.loads(args.overrides)
    if args.query_defaults and build.get("reused"):
        # a knowledge base keeps the [query] settings of the day it was built; a fresh one has today's
        from kb_assistant.config import KBConfig

        overrides = {**overrides, "query": {**KBConfig().to_dict()["query"], **overrides.get("query", {})}}
    if args.gate_from:
        import tomllib

        fitted = tomllib.loads(Path(args.gate_from, "config.toml").read_text("utf-8"))["gate"]["fitted"]
        overrides.setdefault("gate", {}).update(fitted=fitted, auto_refit_share=None)
    if overrides:
        kb.config = kb.config.merged(overrides)
        kb._engine = None

    questions = [json.loads(line) for line in Path(args.qa_file).read_text("utf-8").splitlines() if line]
    records = ask_and_record(kb, [(q["id"], q["question"]) for q in questions])
    out = {"build": build, "records": records, "gate": _gate_info(kb)}
    Path(args.child_out).write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    kb.close()
    return 0


def _hit(h: Any) -> dict[str, Any]:
    return {"source": h.source, "page": h.page, "text": h.text, "lang": (h.metadata or {}).get("lang")}


def ask_and_record(kb: Any, questions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Search and ask (streamed, answer cache off) each ``(id, question)`` after one warm-up question:
    the records :func:`score` reads. Public APIs only, so any pipeline version runs it."""
    kb.ask("warm-up question about the knowledge base", use_cache=False)
    records = []
    for qid, question in questions:
        hits = kb.search(question, k=5)
        start, first = time.perf_counter(), None
        stream = kb.ask_stream(question, use_cache=False)
        for piece in stream:
            if first is None and piece:
                first = time.perf_counter()
        end = time.perf_counter()
        a = stream.answer
        records.append({"id": qid, "text": a.text, "unknown": bool(a.unknown), "mode": a.mode,
                        "cited": [_hit(h) for h in a.citations.values()], "hits": [_hit(h) for h in hits],
                        "total_ms": (end - start) * 1000, "first_token_ms": ((first or end) - start) * 1000,
                        "confidence": getattr(a, "confidence", None)})
    return records


def _gate_info(kb: Any) -> dict[str, Any]:
    gate = getattr(getattr(kb, "config", None), "gate", None)
    fitted = getattr(gate, "fitted", None) or {}
    return {"fitted": bool(fitted), "report": fitted.get("report")}


# ------------------------------------------------------------------ scoring (the parent)
def score(items: list[Any], result: dict[str, Any]) -> dict[str, Any]:
    from kb_assistant.evaluation.metrics import hit_matches, parallel_page_matches
    from kb_assistant.evaluation.text_metrics import keyword_hit
    from kb_assistant.text import detect_lang
    from kb_assistant.types import Hit

    def hits(dicts: list[dict[str, Any]]) -> list[Hit]:
        return [Hit(text=d["text"], score=0.0, source=d["source"], page=d["page"], chunk_id="")
                for d in dicts]

    recs = {r["id"]: r for r in result["records"]}
    rows = []
    for it in items:
        r = recs[it.id]
        cited = hits(r["cited"])
        cite_ok = any(hit_matches(h, it) for h in cited)
        facts = bool(it.answer_keywords) and (keyword_hit(r["text"], it.answer_keywords) == 1.0 or (
            bool(it.answer_keywords_zh) and keyword_hit(r["text"], it.answer_keywords_zh) == 1.0))
        rows.append({"kind": it.kind, "answerable": it.answerable, "unknown": r["unknown"], "facts": facts,
                     "cite_ok": cite_ok, "mode": r["mode"],
                     "cite_parallel": cite_ok or any(parallel_page_matches(h, it) for h in cited),
                     "found@5": any(hit_matches(h, it) for h in hits(r["hits"])),
                     "total_ms": r["total_ms"], "first_ms": r["first_token_ms"],
                     "lang_ok": (r["unknown"] or detect_lang(r["text"]) == it.lang
                                 or _marked_quote(r["text"]))})

    def group(sel: list[dict[str, Any]]) -> dict[str, Any]:
        ans = [x for x in sel if x["answerable"]]
        una = [x for x in sel if not x["answerable"]]
        answered = [x for x in ans if not x["unknown"]]
        total = sorted(x["total_ms"] for x in sel)
        first = sorted(x["first_ms"] for x in sel)

        def pct(v: list[float], p: float) -> float | None:
            return round(v[min(len(v) - 1, int(p * len(v)))], 1) if v else None

        def rate(num: int, den: int) -> float | None:
            return round(num / den, 4) if den else None
        return {"n": len(sel), "unknown_on_unanswerable": rate(sum(x["unknown"] for x in una), len(una)),
                "false_unknown": rate(sum(x["unknown"] for x in ans), len(ans)),
                "facts": rate(sum(x["facts"] for x in ans), len(ans)),
                "cite_ok": rate(sum(x["cite_ok"] for x in answered), len(answered)),
                "cite_ok_parallel": rate(sum(x["cite_parallel"] for x in answered), len(answered)),
                "answer_lang_ok": rate(sum(x["lang_ok"] for x in sel), len(sel)),
                "generated_share": rate(sum(x["mode"] == "generated" for x in answered), len(answered)),
                "p50_ms": pct(total, 0.5), "p95_ms": pct(total, 0.95), "first_token_p50_ms": pct(first, 0.5)}
    out = {"all": group(rows)}
    for kind in sorted({r["kind"] for r in rows}):
        out[kind] = group([r for r in rows if r["kind"] == kind])
    out["recall@5"] = {k: round(sum(r["found@5"] for r in rows if r["kind"] == k)
                                / max(1, sum(1 for r in rows if r["kind"] == k)), 4)
                       for k in sorted({r["kind"] for r in rows if r["answerable"]})}
    return out


def _marked_quote(text: str) -> bool:
    """An English answer that quotes Chinese text says so (the engine marks such quotes)."""
    return "(quoted from a Chinese document)" in text or "（引自英文文档）" in text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="checkout of today's pipeline (omit: current only)")
    ap.add_argument("--corpora", default="handbook,pdf")
    ap.add_argument("--split", default="test", choices=("tune", "test"))
    ap.add_argument("--cross", action="store_true",
                    help="also each corpus with the other corpus' fitted gate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the cached knowledge base folders")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a setting of the current pipeline for this run (value as TOML), e.g. "
                         "--set query.extractive_chars=300")
    ap.add_argument("--pipelines", default="baseline,current", help="which of them to run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation.json")
    ap.add_argument("--markdown", type=Path, metavar="JSON", help="print the docs tables of a result file")
    ap.add_argument("--rescore", type=Path, metavar="JSON",
                    help="score the stored answers of a result file again (with today's metrics) into --out")
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--kb", help=argparse.SUPPRESS)
    ap.add_argument("--qa-file", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--gate-from", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--query-defaults", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text("utf-8"))))
        return 0

    sys.path.insert(0, str(ROOT))
    import tomllib

    from kb_assistant.evaluation.qa import load_qa

    if args.rescore:
        record = json.loads(args.rescore.read_text("utf-8"))
        for name, res in record["results"].items():
            if "records" in res:
                res["scores"] = score(load_qa(CORPORA[name.split("/")[1].split()[0]]["qa"],
                                              split=record["split"]), res)
        args.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(markdown(record))
        return 0
    pipelines = {"current": ROOT}
    if args.baseline:
        pipelines = {"baseline": args.baseline.resolve(), **pipelines}
    pipelines = {k: v for k, v in pipelines.items() if k in args.pipelines.split(",")}
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        overrides.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record: dict[str, Any] = {"split": args.split, "started": started, "load_before": os.getloadavg(),
                              "overrides": overrides, "results": {}}
    tmp = Path(tempfile.mkdtemp(prefix="kb-gen-"))
    runs = [(p, c, None) for c in args.corpora.split(",") for p in pipelines]
    if args.cross:
        names = args.corpora.split(",")
        runs += [("current", c, o) for c in names for o in names if o != c]
    for pipeline, corpus, gate_from in runs:
        items = load_qa(CORPORA[corpus]["qa"], split=args.split)
        qa_file = tmp / f"{corpus}.{args.split}.jsonl"
        qa_file.write_text("".join(json.dumps({"id": i.id, "question": i.question}, ensure_ascii=False) + "\n"
                                   for i in items), "utf-8")
        kb_dir = CACHE / f"gen-{pipeline}-{corpus}{args.tag}"
        name = f"{pipeline}/{corpus}" + (f" (gate of {gate_from})" if gate_from else "")
        cmd = [sys.executable, str(ROOT / "benchmarks" / "generalisation.py"), "--child", "--corpus", corpus,
               "--kb", str(kb_dir), "--qa-file", str(qa_file), "--child-out", str(tmp / "out.json"),
               "--threads", str(args.threads)]
        if gate_from:
            cmd += ["--gate-from", str(CACHE / f"gen-current-{gate_from}{args.tag}")]
        if pipeline == "current":
            cmd += ["--overrides", json.dumps(overrides), "--query-defaults"]
        env = dict(os.environ, PYTHONPATH=str(pipelines[pipeline]), HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1")
        t = time.perf_counter()
        print(f"{name}: {len(items)} questions ...", flush=True)
        proc = subprocess.run(cmd, cwd=pipelines[pipeline], env=env, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            record["results"][name] = {"error": proc.stderr[-600:]}
            continue
        result = json.loads((tmp / "out.json").read_text("utf-8"))
        record["results"][name] = {"seconds": round(time.perf_counter() - t, 1), "build": result["build"],
                                   "gate": result["gate"], "scores": score(items, result),
                                   "records": result["records"]}
        print(json.dumps(record["results"][name]["scores"]["all"]), flush=True)
    record["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def markdown(record: dict[str, Any]) -> str:
    """One table per run (pipeline / corpus / gate): the metrics per question group."""
    out = [f"split: **{record['split']}**, started {record['started']}, load average before "
           f"{', '.join(f'{v:.1f}' for v in record['load_before'])}, after "
           f"{', '.join(f'{v:.1f}' for v in record.get('load_after', []))}", ""]
    head = ("| run | group | n | unknown on unanswerable | false unknown | facts | cite-ok "
            "| cite-ok, parallel page counts | language ok | generated | p50 s | p95 s | 1st token p50 s |")
    out += [head, "|" + "---|" * 13]
    for name, res in record["results"].items():
        if "error" in res:
            out.append(f"| {name} | error | | | | | | | | | | | |")
            continue
        for group, sc in res["scores"].items():
            if group == "recall@5":
                continue
            ms = [sc.get(k) for k in ("p50_ms", "p95_ms", "first_token_p50_ms")]
            out.append(f"| {name} | {group} | {sc['n']} | {_pct(sc['unknown_on_unanswerable'])} | "
                       f"{_pct(sc['false_unknown'])} | {_pct(sc['facts'])} | {_pct(sc['cite_ok'])} | "
                       f"{_pct(sc.get('cite_ok_parallel'))} | "
                       f"{_pct(sc['answer_lang_ok'])} | {_pct(sc['generated_share'])} | "
                       + " | ".join("-" if v is None else f"{v / 1000:.2f}" for v in ms) + " |")
    out += ["", "| run | recall@5 en | zh | en→zh |", "|---|---|---|---|"]
    for name, res in record["results"].items():
        r5 = res.get("scores", {}).get("recall@5", {})
        out.append(f"| {name} | " + " | ".join("-" if r5.get(k) is None else f"{r5[k]:.2f}"
                                               for k in ("en", "zh", "cross")) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
