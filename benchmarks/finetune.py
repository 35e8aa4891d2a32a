"""Before/after benchmark of LoRA fine-tuning on the Debian handbook dev set.

    python benchmarks/finetune.py                      # build the dev KB, prepare, train, evaluate
    python benchmarks/finetune.py --skip-train --adapter benchmarks/.cache/ft_run/adapter

Steps: (1) a dev knowledge base from the en-US handbook pages that the QA set cites (fetch the corpus
with scripts/get_debian_handbook.sh); (2) RAFT-style training data from that KB with every chunk that
holds an evaluation evidence snippet kept out (``--exclude-qa``); (3) LoRA training; (4) the base model
and the adapter answer the same QA questions over the same retrieval and prompts. Results go to
benchmarks/results/finetune.json. CPU runs: use --threads 1 on a shared machine (two threads on two
busy cores were 4x slower there); the defaults are the configuration measured in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QA = ROOT / "benchmarks" / "data" / "debian_qa.jsonl"
CORPUS = ROOT / "benchmarks" / ".corpus"
CACHE = ROOT / "benchmarks" / ".cache"
#: the handbook's sidebar labels ("BACK TO BASICS", "GOING FURTHER", ...): never cloze answers
HANDBOOK_LABELS = ["BACK", "BASICS", "GOING", "FURTHER", "CULTURE", "SECURITY", "QUICK", "LOOK", "PRACTICE",
                   "ALTERNATIVE", "DEBIAN", "POLICY", "COMMUNITY", "SPECIFIC", "TOOL"]


def eval_items(n_answerable: int, n_unanswerable: int, seed: int) -> list:
    """English answerable items whose source is in the dev KB, plus unanswerable items (both languages)."""
    from kb_assistant.evaluation.qa import load_qa

    items = load_qa(QA)
    ans = [it for it in items if it.answerable and it.lang == "en" and (it.source or "").startswith("en-US/")]
    una = [it for it in items if not it.answerable]
    rng = random.Random(seed)
    rng.shuffle(ans)
    rng.shuffle(una)
    return ans[:n_answerable] + una[:n_unanswerable]


def build_kb(path: Path):
    from kb_assistant.evaluation.qa import load_qa
    from kb_assistant.knowledge_base import KnowledgeBase

    kb = KnowledgeBase(path)
    if kb.stats()["chunks"] == 0:
        sources = sorted({it.source for it in load_qa(QA) if (it.source or "").startswith("en-US/")})
        files = [CORPUS / s for s in sources]
        missing = [f for f in files if not f.is_file()]
        if missing:
            sys.exit(f"corpus missing ({missing[0]}): run scripts/get_debian_handbook.sh first")
        t = time.perf_counter()
        report = kb.ingest(files, show_progress=False)
        logging.info("dev KB: %s (%.0f s)", report.summary(), time.perf_counter() - t)
    return kb


def adapter_only(items: list, model_path: Path, adapter: Path, heldout: list, base_file: str) -> dict:
    """Like evaluate.before_after, with the base answers/metrics read from an earlier results file."""
    from kb_assistant.config import GenerationConfig
    from kb_assistant.finetune.evaluate import answer_metrics, perplexity, predict
    from kb_assistant.generation import Generator

    old = json.loads(Path(base_file).read_text(encoding="utf-8"))["eval"]
    if [a["question"] for a in old["answers"]] != [it.question for it in items]:
        sys.exit("--reuse-base: the earlier run used other questions")
    gen = Generator(model_path, adapter=adapter)
    preds = predict(lambda m: gen.generate(m, GenerationConfig(max_new_tokens=48, max_sentences=2)), items)
    metrics = answer_metrics(items, preds)
    metrics["perplexity"] = perplexity(gen.model, gen.tokenizer, heldout)
    return {"base": {"metrics": old["base"], "answers": [a["base"] for a in old["answers"]]},
            "adapter": {"metrics": metrics, "answers": preds}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", default=str(CACHE / "ft_dev_kb"))
    ap.add_argument("--work", default=str(CACHE / "ft_run"))
    ap.add_argument("--n", type=int, default=400, help="training examples to prepare")
    ap.add_argument("--unknown-fraction", type=float, default=0.12)
    ap.add_argument("--gold-first", type=float, default=0.8,
                    help="share of answer examples with the gold passage first (gold_first_fraction)")
    ap.add_argument("--answer-span", choices=("sentence", "passage"), default="passage",
                    help="answer targets: the question's sentence, or it then the rest of the gold passage")
    ap.add_argument("--unrelated-unknown", type=float, default=1.0,
                    help="share of unknown examples over another question's passages")
    ap.add_argument("--max-steps", type=int, default=160)
    ap.add_argument("--top-layers", type=int, default=10)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--answerable", type=int, default=30, help="answerable eval questions (en)")
    ap.add_argument("--unanswerable", type=int, default=20, help="unanswerable eval questions")
    ap.add_argument("--skip-train", action="store_true", help="evaluate an existing --adapter")
    ap.add_argument("--adapter", help="adapter folder (default: WORK/adapter)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune.json"))
    ap.add_argument("--seed", type=int, default=0, help="data generation and training seed")
    ap.add_argument("--eval-seed", type=int, default=0, help="which QA questions are evaluated")
    ap.add_argument("--reuse-base", metavar="RESULTS_JSON",
                    help="take the base model's answers from an earlier run on the same questions (greedy)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch
    from transformers import AutoTokenizer

    from kb_assistant.finetune.data import DataGenConfig, generate_examples
    from kb_assistant.finetune.evaluate import before_after, format_table, items_from_qa
    from kb_assistant.finetune.examples import load_examples, save_examples
    from kb_assistant.finetune.train import TrainConfig, split_examples, train
    from kb_assistant.generation import default_generator_path

    torch.set_num_threads(args.threads)
    work, model_path = Path(args.work), default_generator_path()
    adapter = Path(args.adapter) if args.adapter else work / "adapter"
    tok = AutoTokenizer.from_pretrained(str(model_path))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    kb = build_kb(Path(args.kb))
    record: dict = {"hardware": {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                                 "processor": platform.processor(), "torch_threads": args.threads,
                                 "cuda": torch.cuda.is_available()}}
    data_file = work / "data.jsonl"
    cfg = TrainConfig(max_steps=args.max_steps, batch_size=4, top_layers=args.top_layers, rank=args.rank,
                      alpha=2 * args.rank, lr=args.lr, eval_every=20, save_every=20, max_val_examples=24,
                      threads=args.threads, seed=args.seed)
    if not args.skip_train:
        from kb_assistant.finetune.evaluate import eval_evidence

        t = time.perf_counter()
        examples, stats = generate_examples(kb, DataGenConfig(n=args.n, seed=args.seed,
                                                          unknown_fraction=args.unknown_fraction,
                                                          gold_first_fraction=args.gold_first,
                                                          answer_span=args.answer_span,
                                                          unrelated_unknown_fraction=args.unrelated_unknown,
                                                          skip_names=HANDBOOK_LABELS),
                                            exclude_evidence=eval_evidence(QA), count_tokens=count)
        save_examples(data_file, examples)
        record["prepare"] = {"seconds": round(time.perf_counter() - t, 1), **stats}
        result = train(examples, model_path, adapter, cfg, show_progress=sys.stderr.isatty())
        record["train"] = {k: v for k, v in result.to_dict().items() if k != "history"}
    examples = load_examples(data_file)
    _, heldout = split_examples(examples, cfg.val_fraction, cfg.seed)
    qa = eval_items(args.answerable, args.unanswerable, args.eval_seed)
    train_text = "\n".join(json.dumps(e.messages, ensure_ascii=False) for e in examples)
    leaked = [it.id for it in qa if it.question in train_text]
    items = items_from_qa(kb, qa, count_tokens=count)
    t = time.perf_counter()
    if args.reuse_base:
        result = adapter_only(items, model_path, adapter, heldout[: cfg.max_val_examples], args.reuse_base)
    else:
        result = before_after(items, model_path, adapter, heldout=heldout[: cfg.max_val_examples],
                              show_progress=sys.stderr.isatty())
    record["eval"] = {"seconds": round(time.perf_counter() - t, 1), "questions": len(items),
                      "eval_questions_in_training_data": leaked,
                      "base": result["base"]["metrics"], "adapter": result["adapter"]["metrics"],
                      "answers": [{"id": it.id, "question": it.question, "answerable": it.answerable,
                                   "base": b, "adapter": a}
                                  for it, b, a in zip(items, result["base"]["answers"],
                                                      result["adapter"]["answers"], strict=True)]}
    table = format_table(result["base"]["metrics"], result["adapter"]["metrics"])
    record["table"] = table
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    print(table)
    print(f"written {out}")
    kb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
