"""Several prompts in one ``model.generate`` call: left padding, per-row stopping, per-row streaming.

:meth:`kb_assistant.generation.Generator.generate_batch` is the public entry; the server's batcher
(:mod:`kb_assistant.answering.batching`) uses :func:`run_batch` with a :class:`RowSink` per request, so
each request receives its own text pieces and may stop its row early (a closed stream) while the other
rows go on. Greedy rows give the same tokens as one-at-a-time generation (tested on SmolLM2): the
attention mask hides the padding and the position ids start at each row's first real token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from .config import GenerationConfig
from .text import SENTENCE_END_RE, truncate_sentences


class RowSink(Protocol):
    """Where one row's text goes: ``put`` new text, ``end`` once the row is finished."""

    cancelled: threading.Event

    def put(self, text: str) -> None: ...

    def end(self) -> None: ...


def batchable(config: GenerationConfig) -> bool:
    """Greedy or unseeded sampling without beams: such requests may share a forward pass."""
    return config.num_beams == 1 and config.seed is None


def batch_key(config: GenerationConfig) -> tuple[Any, ...]:
    """Requests with the same key may run in one batch (same decoding parameters)."""
    return (*sorted(config.to_generate_kwargs().items()), config.max_sentences)


class _Rows:
    """The streamer and the stopping criterion of one batch: decodes each row's new tokens, forwards
    them to its sink, and stops a row at its end token, its sentence limit or when it was cancelled."""

    def __init__(self, tokenizer: Any, n: int, max_sentences: int | None, eos: set[int],
                 sinks: Sequence[RowSink | None]) -> None:
        self.tok, self.max_sentences, self.eos = tokenizer, max_sentences, eos
        self.sinks = list(sinks) or [None] * n
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.text = [""] * n
        self.done = [False] * n
        self._prompt_seen = False

    # -- streamer interface (transformers calls put() with the prompt, then each step's tokens)
    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.feed(range(len(self.done)), value.reshape(-1).tolist())

    def feed(self, rows: Any, tokens: list[int]) -> None:
        """The next token of each of ``rows``: decoded and forwarded; an end token finishes the row."""
        for i, token in zip(rows, tokens, strict=True):
            if self.done[i]:
                continue
            if token in self.eos:
                self._finish(i)
                continue
            self.ids[i].append(token)
            text = self.tok.decode(self.ids[i], skip_special_tokens=True)
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
                continue
            new, self.text[i] = text[len(self.text[i]):], text
            sink = self.sinks[i]
            if new and sink is not None:
                sink.put(new)

    def end(self) -> None:
        for i in range(len(self.done)):
            self._finish(i)

    def _finish(self, i: int) -> None:
        if not self.done[i]:
            self.done[i] = True
            sink = self.sinks[i]
            if sink is not None:
                sink.end()

    def check(self) -> list[bool]:
        """Finish the rows that were cancelled or reached their sentence limit; every row's state."""
        for i in range(len(self.done)):
            if self.done[i]:
                continue
            sink = self.sinks[i]
            if (sink is not None and sink.cancelled.is_set()) or (
                    self.max_sentences and len(SENTENCE_END_RE.findall(self.text[i])) >= self.max_sentences):
                self._finish(i)
        return self.done

    # -- stopping criterion of model.generate (called after put() for the same step)
    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.tensor(self.check(), dtype=torch.bool, device=input_ids.device)


def _eos_ids(model: Any, tok: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tok.eos_token_id
    ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
    return {int(i) for i in ids if i is not None}


def run_batch(gen: Any, messages_list: Sequence[list[dict[str, str]]], config: GenerationConfig,
              sinks: Sequence[RowSink | None] = ()) -> list[str]:
    """Generate a reply to each of ``messages_list`` in one ``model.generate`` call (left-padded);
    ``sinks`` (one per prompt) receive the text as it is generated. Returns the replies, cut after
    ``config.max_sentences`` sentences, as :meth:`Generator.generate` would."""
    import torch
    from transformers import StoppingCriteriaList

    if not messages_list:
        return []
    tok, model = gen.tokenizer, gen.model
    rows = [tok(gen.render(m), add_special_tokens=False)["input_ids"] for m in messages_list]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    state = _Rows(tok, len(rows), config.max_sentences, _eos_ids(model, tok), sinks)
    if config.seed is not None:
        torch.manual_seed(config.seed)
    try:
        with torch.no_grad():
            if config.num_beams == 1:
                _decode(model, ids.to(gen.device), mask.to(gen.device), config, state)
            else:
                model.generate(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                               pad_token_id=pad, **config.to_generate_kwargs(),
                               stopping_criteria=StoppingCriteriaList([state]), streamer=state)
    finally:
        state.end()
    return [truncate_sentences(tok.decode(r, skip_special_tokens=True), config.max_sentences)
            for r in state.ids]


def _processors(config: GenerationConfig) -> Any:
    """The logits processors ``model.generate`` applies for ``config`` (repetition penalty, sampling)."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.do_sample:
        if config.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            procs.append(TopKLogitsWarper(config.top_k))
        if config.top_p < 1.0:
            procs.append(TopPLogitsWarper(config.top_p))
    return procs


def _decode(model: Any, ids: Any, mask: Any, config: GenerationConfig, state: _Rows) -> None:
    """Greedy or sampled decoding with a KV cache, one token per live row per step; finished rows
    leave the batch at once (``model.generate`` would keep computing them until the longest ends)."""
    import torch
    from transformers import DynamicCache

    procs = _processors(config)
    rows = list(range(ids.shape[0]))  # the original row of each live row
    seq = ids  # prompt + generated tokens of the live rows (the repetition penalty reads them)
    cache = DynamicCache(config=model.config)
    position = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    for _ in range(config.max_new_tokens):
        scores = procs(seq, out.logits[:, -1, :].to(dtype=torch.float32))
        if config.do_sample:
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            token = torch.argmax(scores, dim=-1)
        state.feed(rows, token.tolist())
        done = state.check()
        keep = [j for j, r in enumerate(rows) if not done[r]]
        if not keep:
            return
        seq = torch.cat([seq, token[:, None]], dim=-1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=seq.device)
            cache.batch_select_indices(index)
            seq, mask, token = seq[index], mask[index], token[index]
            rows = [rows[j] for j in keep]
        position = mask.long().sum(-1, keepdim=True) - 1
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                    past_key_values=cache, use_cache=True)
