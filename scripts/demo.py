#!/usr/bin/env python
"""`make demo`: ingest the bundled sample knowledge base and answer questions, offline.

Re-running re-uses the index (unchanged files are skipped by content hash).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample_kb"
KB_DIR = ROOT / "examples" / ".demo_kb"

SEARCHES = [
    ("en", "What port does the VPN server use?"),
    ("zh", "报销单需要在多长时间内提交？"),
]
QUESTIONS = [
    ("en", "How many days of annual leave do employees get?"),
    ("zh", "打印服务器的地址是什么？"),
    ("en", "What is the company's policy on stock options for contractors?"),
]


def _where(hit) -> str:  # noqa: ANN001
    return f"{Path(hit.source).name}" + (f", page {hit.page}" if hit.page else "")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from kb_assistant import KnowledgeBase

    print(f"== Knowledge base: {KB_DIR.relative_to(ROOT)}  (sample files: {SAMPLE.relative_to(ROOT)})")
    kb = KnowledgeBase(KB_DIR)
    report = kb.ingest([SAMPLE], show_progress=sys.stderr.isatty())
    print(f"== Ingest: {report.summary()}")
    for item in report.failed:
        print(f"   FAILED {item.path}: {item.reason}")

    for lang, query in SEARCHES:
        print(f"\n== Search ({lang}): {query}")
        for i, hit in enumerate(kb.search(query, k=3), 1):
            text = " ".join(hit.text.split())
            print(f"  [{i}] {hit.score:.3f}  {_where(hit)}\n      {text[:160]}")

    try:
        import kb_assistant.answering  # noqa: F401
    except ImportError:
        print("\n(answer generation not available in this build)")
        return 0
    print("\n(the first answer converts the embedded generator to a cached safetensors folder once, ~40 s)")
    for lang, question in QUESTIONS:
        print(f"\n== Ask ({lang}): {question}")
        start = time.perf_counter()
        answer = kb.ask(question)
        took = time.perf_counter() - start
        tag = "UNKNOWN" if answer.unknown else "answer"
        print(f"  {tag}: {answer.text}")
        if not answer.unknown:
            for n, hit in enumerate(answer.sources, 1):
                print(f"    [{n}] {_where(hit)}")
        print(f"  ({took:.2f} s)")
    kb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
