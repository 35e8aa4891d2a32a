#!/usr/bin/env python
"""Answer benchmark: kb-assistant's answer stage vs the same models behind a naive LlamaIndex engine.

    scripts/get_debian_handbook.sh
    python benchmarks/answers.py [--kb benchmarks/.cache/kb-minilm] [--qa benchmarks/data/debian_qa.jsonl]
                                 [--limit 60] [--json out.json]

Both pipelines get the same retrieval (the knowledge base's hybrid retriever) and the same generator
(SmolLM2-135M-Instruct, greedy). Questions are interleaved (ours, naive, ours, naive...) so machine noise
hits both alike. "naive" = LlamaIndex RetrieverQueryEngine (compact synthesis, top-3 passages, default
prompt, <= 64 new tokens): no unknown gate, no evidence anchoring, no citations.
Facts = the answer contains all of the item's answer_keywords.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def ensure_kb(kb_dir: Path, corpus: Path):  # noqa: ANN201
    from kb_assistant import KnowledgeBase

    kb = KnowledgeBase(kb_dir)
    if not kb.documents():
        print(f"building {kb_dir} from {corpus} (once)...", flush=True)
        kb.ingest(corpus, include=["*.html"], show_progress=True)
    return kb


def stratified(items: list, limit: int | None) -> list:
    if not limit or limit >= len(items):
        return items
    by_kind: dict[str, list] = {}
    for it in items:
        by_kind.setdefault(it.kind, []).append(it)
    out = []
    for group in by_kind.values():
        n = max(1, round(limit * len(group) / len(items)))
        step = len(group) / n
        out += [group[int(i * step)] for i in range(n)]
    return out


class _NaiveStream:
    """Adapter giving the naive engine's answer the shape evaluate_answers expects."""

    def __init__(self, engine, question: str) -> None:  # noqa: ANN001
        self.engine, self.question, self.answer = engine, question, None

    def __iter__(self):  # noqa: ANN204
        from kb_assistant.finetune.evaluate import is_unknown
        from kb_assistant.types import Hit

        response = self.engine.query(self.question)
        text = str(response.response or "")
        sources = [Hit(text=n.node.get_content(), score=float(n.score or 0),
                       source=n.node.metadata["source"], page=n.node.metadata.get("page"),
                       chunk_id=n.node.node_id) for n in response.source_nodes]
        self.answer = SimpleNamespace(text=text, unknown=is_unknown(text), sources=sources, citations={},
                                      mode="naive")
        yield text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", type=Path, default=ROOT / "benchmarks" / ".cache" / "kb-minilm")
    ap.add_argument("--corpus", type=Path, default=ROOT / "benchmarks" / ".corpus")
    ap.add_argument("--qa", type=Path, default=ROOT / "benchmarks" / "data" / "debian_qa.jsonl")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--naive-limit", type=int,
                    help="run the (slow) naive engine on a stratified subset of this many of the questions; "
                         "both pipelines are then also reported on that subset")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from kb_assistant.evaluation.answers_eval import AnswerReport, evaluate_answers
    from kb_assistant.evaluation.qa import load_qa

    kb = ensure_kb(args.kb, args.corpus)
    items = stratified(load_qa(args.qa), args.limit)
    naive_ids = {it.id for it in stratified(items, args.naive_limit)}
    kb.ask("warm-up: what is apt?", use_cache=False)
    ours, naive = AnswerReport(), AnswerReport()
    engine = None
    if not args.no_naive:
        from kb_assistant.integrations.llama_index_engine import KBLLM, as_llama_index_query_engine

        llm = KBLLM.from_kb(kb, max_new_tokens=64)
        engine = as_llama_index_query_engine(kb, k=3, synthesizer="llama_index", llm=llm)
        engine.query("warm-up: what is apt?")
    start = time.perf_counter()
    for i, item in enumerate(items, 1):
        ours.records += evaluate_answers(lambda q: kb.ask_stream(q, use_cache=False), [item]).records
        if engine is not None and item.id in naive_ids:
            naive.records += evaluate_answers(lambda q: _NaiveStream(engine, q), [item]).records
        if i % 10 == 0:
            print(f"  {i}/{len(items)} questions ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\nQA: {args.qa.name}, {len(items)} questions (stratified by kind), KB: {args.kb}")
    print("\nkb-assistant (gate + evidence anchor + generator):")
    print(ours.format_table())
    modes: dict[str, int] = {}
    for r in ours.records:
        modes[r.mode] = modes.get(r.mode, 0) + 1
    print(f"answer modes: {modes}")
    if engine is not None:
        if len(naive_ids) < len(items):
            same = AnswerReport([r for r in ours.records if r.id in naive_ids])
            print(f"\nkb-assistant on the {len(naive_ids)} questions the naive engine also answered:")
            print(same.format_table())
        print("\nnaive LlamaIndex query engine (same retrieval and generator, no gate):")
        print(naive.format_table())
    if args.json:
        args.json.write_text(json.dumps({"ours": ours.to_dict(), "naive": naive.to_dict()}, indent=2,
                                        ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
