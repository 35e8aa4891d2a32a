"""Before/after evaluation of a fine-tuned generator on the same questions and the same retrieval.

Each question gets the prompt the query engine would build (retrieval -> evidence -> numbered
passages, :func:`kb_assistant.finetune.data.engine_context`); the base generator and the generator
with the adapter answer the *same* prompts. The query engine's score gate and extractive fallback are
left out on purpose: they would hide what the generator itself learned.

Metrics: answer keyword hit rate (answerable items: share of the expected keywords in the answer),
ROUGE-L F1 (LCS; CJK by characters, other text by words), corpus BLEU (sacrebleu when installed,
else a BLEU-4 with add-one smoothing), faithfulness (mean share of the answer's content terms found
in the passages it cites, or all passages when it cites none), unknown precision/recall/F1 (the
positive class is "the model said it does not know"), and perplexity on held-out training examples.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..evaluation.text_metrics import bleu, faithfulness, is_unknown, keyword_hit, rouge_l
from ..text import detect_lang, terms
from .data import engine_context
from .examples import TrainExample

logger = logging.getLogger(__name__)

METRICS = ("keyword_hit", "rouge_l", "bleu", "faithfulness", "unknown_precision", "unknown_recall",
           "unknown_f1", "perplexity")


@dataclass
class EvalItem:
    """One question with its prompt. ``answerable`` False means the right answer is "unknown"."""

    question: str
    lang: str
    answerable: bool
    messages: list[dict[str, str]]
    passages: list[str]
    keywords: list[str] = field(default_factory=list)
    reference: str = ""
    id: str = ""


def answer_metrics(items: Sequence[EvalItem], predictions: Sequence[str]) -> dict[str, Any]:
    """Every answer metric (fractions 0..1 except BLEU 0..100) over aligned items/predictions."""
    ans = [(it, p) for it, p in zip(items, predictions, strict=True) if it.answerable]
    said_unknown = [is_unknown(p) for p in predictions]
    truly_unknown = [not it.answerable for it in items]
    tp = sum(1 for s, t in zip(said_unknown, truly_unknown, strict=True) if s and t)
    fp = sum(1 for s, t in zip(said_unknown, truly_unknown, strict=True) if s and not t)
    fn = sum(1 for s, t in zip(said_unknown, truly_unknown, strict=True) if not s and t)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    with_ref = [(it, p) for it, p in ans if it.reference]
    answered = [(it, p) for it, p in zip(items, predictions, strict=True) if not is_unknown(p)]
    bleu_score, bleu_impl = bleu([p for _, p in with_ref], [it.reference for it, _ in with_ref])
    return {
        "n": len(items), "n_answerable": len(ans), "n_unanswerable": len(items) - len(ans),
        "keyword_hit": _mean([keyword_hit(p, it.keywords) for it, p in ans if it.keywords]),
        "rouge_l": _mean([rouge_l(p, it.reference) for it, p in with_ref]),
        "bleu": bleu_score, "bleu_impl": bleu_impl,
        "faithfulness": _mean([faithfulness(p, it.passages) for it, p in answered]),
        "unknown_precision": prec, "unknown_recall": rec,
        "unknown_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "answered": len(answered),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# ------------------------------------------------------------------ items
def load_questions(path: Any) -> list[Any]:
    """QA items from a .jsonl file: the strict ``evaluation.qa`` schema when it validates, else a lenient
    read (``question`` required; ``lang``, ``answerable``, ``evidence``, ``answer_keywords``, ``answer``
    optional, ``id`` defaulting to the line number) so that small hand-written sets work too."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from ..errors import ConfigError
    from ..evaluation.qa import load_qa

    try:
        return load_qa(path)
    except ConfigError as strict:
        items = []
        for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(d, dict) or not isinstance(d.get("question"), str):
                raise ConfigError(f"{strict} (lenient read: line {lineno} has no 'question')") from None
            items.append(SimpleNamespace(
                id=str(d.get("id", f"line-{lineno}")), question=d["question"],
                lang=d.get("lang") or detect_lang(d["question"]), answerable=bool(d.get("answerable", True)),
                evidence=d.get("evidence"), answer_keywords=list(d.get("answer_keywords") or []),
                answer=d.get("answer")))
        return items


def items_from_qa(kb: Any, qa_items: Sequence[Any], *, k: int = 5, evidence_sentences: int = 3,
                  max_context_tokens: int = 256, count_tokens: Callable[[str], int] | None = None,
                  ) -> list[EvalItem]:
    """Prompts for QA-set questions over ``kb`` exactly as the query engine builds them."""
    out = []
    for qa in qa_items:
        texts = [h.text for h in kb.search(qa.question, k=k)]
        messages, _, _, passages = engine_context(qa.question, texts, lang=qa.lang,
                                                  evidence_sentences=evidence_sentences,
                                                  max_context_tokens=max_context_tokens,
                                                  count_tokens=count_tokens)
        out.append(EvalItem(qa.question, qa.lang, qa.answerable, messages, passages, list(qa.answer_keywords),
                            qa.answer or qa.evidence or "", qa.id))
    return out


def items_from_examples(examples: Sequence[TrainExample]) -> list[EvalItem]:
    """Held-out training examples as evaluation items (keywords: the reference's rarest new terms)."""
    out = []
    for ex in examples:
        question = ex.meta.get("question") or ex.prompt_messages[-1]["content"]
        unknown = ex.meta.get("kind") == "unknown" or is_unknown(ex.response)
        q_terms = set(terms(question))
        new = [t for t in dict.fromkeys(terms(ex.response)) if t not in q_terms and not t.isdigit()]
        keywords = sorted(new, key=lambda t: (-len(t), t))[:3]
        passages = re.findall(r"^\[\d+\] (.*)$", ex.prompt_messages[-1]["content"], flags=re.MULTILINE)
        out.append(EvalItem(question, ex.meta.get("lang") or detect_lang(question), not unknown,
                            ex.prompt_messages, passages, [] if unknown else keywords,
                            "" if unknown else ex.response))
    return out


def predict(generate: Callable[[list[dict[str, str]]], str], items: Sequence[EvalItem],
            show_progress: bool | None = None, desc: str = "answering") -> list[str]:
    from tqdm.auto import tqdm

    disable = (not logger.isEnabledFor(logging.INFO)) if show_progress is None else not show_progress
    return [generate(it.messages) for it in tqdm(items, desc=desc, unit="q", disable=disable)]


def perplexity(model: Any, tokenizer: Any, examples: Sequence[TrainExample],
               max_seq_len: int = 512) -> float | None:
    """exp(mean response-token NLL) of ``model`` on ``examples`` (the prompt is not scored)."""
    from .train import encode, evaluate_loss

    enc = [e for e in (encode(tokenizer, ex, max_seq_len) for ex in examples) if e is not None]
    loss = evaluate_loss(model, enc, tokenizer.pad_token_id, str(next(model.parameters()).device))
    return None if loss is None else math.exp(loss)


def before_after(items: Sequence[EvalItem], model_path: Any, adapter: Any, *,
                 heldout: Sequence[TrainExample] = (), max_new_tokens: int = 48,
                 max_sentences: int | None = 2,
                 show_progress: bool | None = None) -> dict[str, Any]:
    """Answer ``items`` with the base generator and with ``adapter``; returns both metric sets and answers."""
    from ..config import GenerationConfig
    from ..generation import Generator
    from .adapters import check_compatible

    check_compatible(adapter, model_path)
    gen_cfg = GenerationConfig(max_new_tokens=max_new_tokens, max_sentences=max_sentences)
    result: dict[str, Any] = {}
    for name, adapter_dir in (("base", None), ("adapter", adapter)):
        gen = Generator(model_path, adapter=adapter_dir)
        preds = predict(lambda m, g=gen: g.generate(m, gen_cfg), items, show_progress, desc=name)
        metrics = answer_metrics(items, preds)
        metrics["perplexity"] = perplexity(gen.model, gen.tokenizer, heldout) if heldout else None
        result[name] = {"metrics": metrics, "answers": preds}
    return result


def format_table(base: dict[str, Any], tuned: dict[str, Any]) -> str:
    """The before/after table (points for rates; BLEU 0-100; perplexity as is)."""
    lines = [f"{'metric':<20}{'base':>10}{'adapter':>10}{'delta':>10}"]
    for key in METRICS:
        b, a = base.get(key), tuned.get(key)
        if b is None or a is None:
            lines.append(f"{key:<20}{'-':>10}{'-':>10}{'':>10}")
            continue
        scale = 1.0 if key in ("bleu", "perplexity") else 100.0
        lines.append(f"{key:<20}{b * scale:>10.1f}{a * scale:>10.1f}{(a - b) * scale:>+10.1f}")
    lines.append(f"(n={base.get('n')}: {base.get('n_answerable')} answerable, {base.get('n_unanswerable')} "
                 f"unanswerable; rates in %, BLEU by {base.get('bleu_impl')})")
    return "\n".join(lines)


def eval_evidence(qa_path: str | os.PathLike[str]) -> list[str]:
    """Evidence snippets of the answerable items of a QA file (chunks holding them are kept out)."""
    return [it.evidence for it in load_questions(qa_path) if it.answerable and it.evidence]
