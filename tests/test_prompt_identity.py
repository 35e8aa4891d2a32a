"""Training and serving show the model byte-identical prompts (one prompt builder, kb_assistant.prompts):
for a model with a chat template (the embedded SmolLM2) and for a plain one (the same weights, the
template removed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kb_assistant.answering import QueryEngine
from kb_assistant.config import QueryConfig
from kb_assistant.finetune.data import engine_context
from kb_assistant.finetune.examples import TrainExample
from kb_assistant.finetune.train import encode
from kb_assistant.generation import Generator, default_generator_path
from kb_assistant.types import Hit

QUESTION = "How many days of annual leave do full-time employees get?"
TEXTS = [
    "Annual leave. Full-time employees receive 25 days of annual leave per calendar year [3]. "
    "Unused days expire on 31 March.",
    "Part-time staff get leave in proportion to their contracted hours. Requests go to HR.",
    "The VPN server is vpn.northwind.example on port 1194.",
]


def _plain_model(tmp_path: Path) -> Path:
    """The embedded generator without a chat template (a base-model prompt layout)."""
    from transformers import AutoTokenizer

    src = default_generator_path()
    dst = tmp_path / "plain-model"
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("tokenizer") and f.name not in ("chat_template.jinja",
                                                                                  "special_tokens_map.json"):
            os.symlink(f, dst / f.name)
    tok = AutoTokenizer.from_pretrained(str(src))
    tok.chat_template = None
    tok.save_pretrained(str(dst))
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    return dst


@pytest.fixture(params=["chat-template", "plain"])
def generator(request, tmp_path) -> Generator:
    path = default_generator_path() if request.param == "chat-template" else _plain_model(tmp_path)
    gen = Generator(path, device="cpu")
    assert bool(getattr(gen.tokenizer, "chat_template", None)) is (request.param == "chat-template")
    return gen


def test_serving_and_training_prompts_are_byte_identical(generator):
    cfg = QueryConfig(unknown_threshold=0.0, answer_mode="generate")
    hits = [Hit(text=t, score=0.9 - 0.1 * i, source=f"/docs/{i}.txt", page=None, chunk_id=f"c{i}")
            for i, t in enumerate(TEXTS)]
    engine = QueryEngine(lambda q, k, groups=None: hits[:k], lambda: generator, cfg)
    prep = engine._prepare(QUESTION, None, {})
    assert prep.answer is None and prep.messages
    serving = generator.render(prep.messages)

    # the fine-tuning path: the same question over the same ranked chunk texts
    messages, order, _, passages = engine_context(QUESTION, TEXTS, evidence_sentences=cfg.evidence_sentences,
                                                  max_context_tokens=cfg.max_context_tokens,
                                                  count_tokens=generator.count_tokens)
    assert messages == prep.messages
    assert [hits[i] for i in order] == prep.sources[: len(order)]
    assert "[3]" not in messages[1]["content"].split("[2]")[0], "citation markers of the text are stripped"
    example = TrainExample(messages + [{"role": "assistant", "content": "25 days [1]."}])
    ids, labels = encode(generator.tokenizer, example, max_seq_len=2048)
    n_prompt = labels.count(-100)
    training = generator.tokenizer.decode(ids[:n_prompt])
    assert training == serving
    assert ids[:n_prompt] == generator.tokenizer(serving, add_special_tokens=False)["input_ids"]
    assert passages and all(p in messages[1]["content"] for p in passages)
