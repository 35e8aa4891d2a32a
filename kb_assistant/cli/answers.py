"""`kb ask` and `kb chat`: answers with citations, streamed to the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .common import EXIT_OK, count_int, dumps, fraction, open_kb, positive_float, positive_int, safe


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in ("k", "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "num_beams",
                 "seed", "answer_mode"):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    if args.group:
        params["groups"] = args.group
    return params


def _sources(answer: Any) -> str:
    lines = []
    for n, hit in enumerate(answer.sources, 1):
        where = os.path.basename(hit.source) + (f", page {hit.page}" if hit.page else "")
        lines.append(f"  [{n}] {where}  (score {hit.score:.2f})")
    return "\n".join(lines)


def _setup_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kb", required=True, help="knowledge base directory")
    p.add_argument("--adapter", help="LoRA adapter name (under the KB's adapters/) or path")
    p.add_argument("--group", action="append", metavar="NAME", help="caller's access groups")
    p.add_argument("-k", type=positive_int, help="passages to retrieve")
    p.add_argument("--answer-mode", choices=["auto", "generate", "extractive"])
    p.add_argument("--max-new-tokens", type=positive_int)
    p.add_argument("--temperature", type=positive_float)
    p.add_argument("--top-k", type=count_int)
    p.add_argument("--top-p", type=fraction)
    p.add_argument("--repetition-penalty", type=positive_float)
    p.add_argument("--num-beams", type=positive_int)
    p.add_argument("--seed", type=int)


def _open_with_adapter(args: argparse.Namespace) -> Any:
    kb = open_kb(args)
    if args.adapter:
        from pathlib import Path

        path = Path(args.adapter)
        if not path.exists() and (kb.path / "adapters" / args.adapter).exists():
            path = kb.path / "adapters" / args.adapter
        kb.adapter = str(path)
    return kb


def _setup_ask(p: argparse.ArgumentParser) -> None:
    p.add_argument("question")
    _setup_common(p)
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON (no streaming)")


def _run_ask(args: argparse.Namespace) -> int:
    kb = _open_with_adapter(args)
    if args.json:
        answer = kb.ask(args.question, **_params(args))
        print(dumps(answer.to_dict()))
        return EXIT_OK
    stream = kb.ask_stream(args.question, **_params(args))
    for piece in stream:
        sys.stdout.write(safe(piece))
        sys.stdout.flush()
    answer = stream.answer
    print()
    if answer.unknown:
        print("(unknown: no passage in the knowledge base is relevant enough)")
    elif answer.sources:
        print("Sources:\n" + safe(_sources(answer)))
    return EXIT_OK


def _setup_chat(p: argparse.ArgumentParser) -> None:
    _setup_common(p)


def _run_chat(args: argparse.Namespace) -> int:
    kb = _open_with_adapter(args)
    session = kb.chat()
    interactive = sys.stdin.isatty()
    if interactive:
        print("kb chat — ask about your documents; empty line or Ctrl-D to quit, /reset to clear history")
    while True:
        try:
            question = input("you> " if interactive else "")
        except EOFError:
            break
        question = question.strip()
        if not question:
            if interactive:
                break
            continue
        if question == "/reset":
            session.reset()
            continue
        sys.stdout.write("kb> ")
        for piece in session.ask_stream(question, **_params(args)):
            sys.stdout.write(safe(piece))
            sys.stdout.flush()
        print()
        answer = session.last_answer
        if answer is not None and answer.sources and not answer.unknown:
            print(safe(_sources(answer)))
    return EXIT_OK


COMMANDS = [
    ("ask", "answer a question from the knowledge base, with sources", _setup_ask, _run_ask),
    ("chat", "interactive conversation with follow-up questions", _setup_chat, _run_chat),
]
