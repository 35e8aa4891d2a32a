"""``kb finetune prepare|train|eval|merge``: LoRA fine-tuning of the generator on a knowledge base.

    kb finetune prepare --kb DIR --out data.jsonl [--n 300] [--exclude-qa qa.jsonl]
    kb finetune train --kb DIR --data data.jsonl --out adapters/NAME [--max-steps 100] [--qa qa.jsonl]
    kb finetune eval --kb DIR --adapter adapters/NAME [--qa qa.jsonl | --data data.jsonl]
    kb finetune merge --adapter adapters/NAME --out models/NAME
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, positive_int

logger = logging.getLogger("kb_assistant.cli")


def _model_path(args: argparse.Namespace, kb: Any = None) -> Path:
    from ..generation import default_generator_path, ensure_converted

    path = getattr(args, "model", None)
    if not path and kb is not None:
        path = kb.config.generation.model_path
    if not path:
        return default_generator_path()
    path = Path(path).expanduser()
    return ensure_converted(path) if path.suffix.lower() == ".gguf" else path


def _query_config(kb: Any) -> Any:
    return kb.config.query


def _counter(model_path: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_path))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..finetune.data import DataGenConfig, generate_examples
    from ..finetune.evaluate import eval_evidence
    from ..finetune.examples import save_examples
    from ..knowledge_base import KnowledgeBase

    kb = KnowledgeBase(args.kb, create=False)
    qc = _query_config(kb)
    cfg = DataGenConfig(n=args.n, seed=args.seed, unknown_fraction=args.unknown_fraction, k=qc.k,
                        evidence_sentences=qc.evidence_sentences, max_context_tokens=qc.max_context_tokens,
                        llm_question_fraction=args.llm_questions, gold_first_fraction=args.gold_first,
                        answer_span=args.answer_span, unrelated_unknown_fraction=args.unrelated_unknown)
    model_path = _model_path(args, kb)
    question_fn = None
    if args.llm_questions > 0:
        from ..finetune.data import generator_question_fn
        from ..generation import Generator

        question_fn = generator_question_fn(Generator(model_path))
    exclude = eval_evidence(args.exclude_qa) if args.exclude_qa else []
    examples, stats = generate_examples(kb, cfg, exclude_evidence=exclude, count_tokens=_counter(model_path),
                                        question_fn=question_fn, show_progress=_progress(args))
    save_examples(args.out, examples)
    kb.close()
    stats["written"] = len(examples)
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json
          else "\n".join(f"{k}: {v}" for k, v in stats.items()) + f"\nwrote {args.out}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace, kb: Any, model_path: Path, adapter: Path, heldout: list[Any]) -> dict:
    from ..finetune.adapters import update_metrics
    from ..finetune.evaluate import (
        before_after,
        format_table,
        items_from_examples,
        items_from_qa,
        load_questions,
    )

    qc = _query_config(kb)
    if getattr(args, "qa", None):
        qa = load_questions(args.qa)
        if args.eval_limit:
            qa = qa[: args.eval_limit]
        items = items_from_qa(kb, qa, k=qc.k, evidence_sentences=qc.evidence_sentences,
                              max_context_tokens=qc.max_context_tokens, count_tokens=_counter(model_path))
        what = f"QA file {args.qa}"
    else:
        items = items_from_examples(heldout[: args.eval_limit or None])
        what = "held-out split"
    result = before_after(items, model_path, adapter, heldout=heldout, max_new_tokens=qc.max_new_tokens,
                          max_sentences=qc.max_sentences, show_progress=_progress(args))
    table = format_table(result["base"]["metrics"], result["adapter"]["metrics"])
    update_metrics(adapter, {"before_after": {"on": what, "base": result["base"]["metrics"],
                                              "adapter": result["adapter"]["metrics"]}})
    print(f"before/after on {what}:\n{table}")
    return result


def _train_config(args: argparse.Namespace) -> Any:
    from ..finetune.train import TrainConfig

    kw: dict[str, Any] = {"seed": args.seed, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                          "max_seq_len": args.max_seq_len, "max_steps": args.max_steps, "epochs": args.epochs,
                          "lr": args.lr, "rank": args.rank, "alpha": args.alpha or 2 * args.rank,
                          "dropout": args.dropout, "top_layers": args.top_layers, "threads": args.threads,
                          "eval_every": args.eval_every, "save_every": args.eval_every}
    if args.target_modules:
        kw["target_modules"] = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    return TrainConfig(**kw)


def cmd_train(args: argparse.Namespace) -> int:
    from ..finetune.examples import load_examples
    from ..finetune.train import split_examples, train
    from ..knowledge_base import KnowledgeBase

    cfg = _train_config(args)
    examples = load_examples(args.data)
    kb = KnowledgeBase(args.kb, create=False)
    model_path = _model_path(args, kb)
    result = train(examples, model_path, args.out, cfg, resume=args.resume, show_progress=_progress(args),
                   manifest_extra={"data_file": str(Path(args.data).resolve()),
                                   "kb": str(Path(args.kb).resolve())})
    print(f"trained {result.steps} steps in {result.train_seconds:.0f} s ({result.sec_per_step:.2f} s/step, "
          f"{result.device}); best held-out loss {result.best_val_loss} -> adapter {result.adapter_dir}")
    if not args.no_eval:
        _, heldout = split_examples(examples, cfg.val_fraction, cfg.seed)
        _evaluate(args, kb, model_path, Path(args.out), heldout[: cfg.max_val_examples])
    kb.close()
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from ..finetune.adapters import read_manifest
    from ..finetune.examples import load_examples
    from ..finetune.train import split_examples
    from ..knowledge_base import KnowledgeBase

    kb = KnowledgeBase(args.kb, create=False)
    manifest = read_manifest(args.adapter)
    heldout: list[Any] = []
    data = args.data or manifest.get("data_file")
    if data and Path(data).is_file():
        params = manifest.get("params", {})
        _, heldout = split_examples(load_examples(data), params.get("val_fraction", 0.1),
                                    params.get("seed", 0))
        heldout = heldout[: params.get("max_val_examples", 64)]
    _evaluate(args, kb, _model_path(args, kb), Path(args.adapter), heldout)
    kb.close()
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from ..finetune.adapters import merge_adapter

    out = merge_adapter(args.adapter, args.out, _model_path(args))
    print(f"merged model written to {out}")
    return EXIT_OK


def setup(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="finetune_command", required=True)

    p = sub.add_parser("prepare", help="build RAFT-style training data from a knowledge base")
    p.add_argument("--kb", required=True, help="knowledge base directory")
    p.add_argument("--out", required=True, help="output .jsonl (inspect and edit it before training)")
    p.add_argument("--n", type=positive_int, default=300, help="number of examples (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unknown-fraction", type=float, default=0.12, help="share of 'unknown' examples")
    p.add_argument("--gold-first", type=float, default=0.8,
                   help="share of answer examples with the gold passage first, as retrieval ranks it "
                        "(0: uniform position)")
    p.add_argument("--unrelated-unknown", type=float, default=1.0, metavar="FRACTION",
                   help="share of 'unknown' examples shown another question's passages (the subject is "
                        "absent); the rest are hard negatives (own retrieval, gold removed)")
    p.add_argument("--answer-span", choices=("sentence", "passage"), default="passage",
                   help="answer targets quote the question's sentence, or that sentence then the rest of the "
                        "gold passage")
    p.add_argument("--exclude-qa", metavar="FILE", help="QA .jsonl whose evidence chunks are kept out")
    p.add_argument("--llm-questions", type=float, default=0.0, metavar="FRACTION",
                   help="share of questions written by the generator (default 0: templates only)")
    p.add_argument("--model", help="generator model folder or .gguf (default: the embedded model)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(finetune_func=cmd_prepare)

    p = sub.add_parser("train", help="train a LoRA adapter, then print the before/after table")
    p.add_argument("--kb", required=True, help="knowledge base directory (retrieval for the evaluation)")
    p.add_argument("--data", required=True, help="training .jsonl ({prompt, response} or {messages})")
    p.add_argument("--out", required=True, help="adapter folder, e.g. adapters/NAME")
    p.add_argument("--max-steps", type=int, help="optimizer steps (wins over --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=int, help="LoRA alpha (default 2 x rank)")
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--target-modules", help="comma-separated module names (default: per model family)")
    p.add_argument("--top-layers", type=int, help="adapt only the last N layers (faster on CPU)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-seq-len", type=int, default=384)
    p.add_argument("--eval-every", type=int, default=25, help="held-out evaluation/checkpoint interval")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--model", help="generator model folder or .gguf (default: the embedded model)")
    p.add_argument("--qa", help="QA .jsonl for the before/after table (default: the held-out split)")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N questions only")
    p.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(finetune_func=cmd_train)

    p = sub.add_parser("eval", help="before/after table for an existing adapter")
    p.add_argument("--kb", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--qa", help="QA .jsonl (default: the held-out split of the adapter's training data)")
    p.add_argument("--data", help="training .jsonl (default: the one recorded in the adapter manifest)")
    p.add_argument("--eval-limit", type=int)
    p.add_argument("--model")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(finetune_func=cmd_eval)

    p = sub.add_parser("merge", help="merge an adapter into a full model folder (faster serving)")
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", help="base model folder or .gguf (default: the embedded model)")
    p.set_defaults(finetune_func=cmd_merge)


def run(args: argparse.Namespace) -> int:
    return int(args.finetune_func(args))


COMMANDS = [
    ("finetune", "fine-tune the generator on the knowledge base (LoRA)", setup, run),
]
