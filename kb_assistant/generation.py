"""Local text generator: a small chat model (default SmolLM2-135M-Instruct, shipped as GGUF).

A GGUF file is converted once to a safetensors folder (:mod:`kb_assistant.models.files`, whose names are
re-exported here). Models are loaded on first use and cached per process, keyed by (path, device, dtype,
int8, adapter). ``torch``/``transformers`` are imported lazily.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import DEVICES, DTYPES, GenerationConfig
from .devices import resolve_device, resolve_dtype
from .errors import ConfigError, KBError, ModelNotFound
from .models.files import (  # noqa: F401  (re-exported: other modules and tests import them from here)
    DEFAULT_GENERATOR_PACKAGE,
    MANIFEST,
    _gguf_key,
    base_model_name,
    cache_root,
    default_generator_path,
    ensure_converted,
    find_default_gguf,
)
from .text import SENTENCE_END_RE, truncate_sentences

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- adapters

def check_adapter_base(adapter: str | os.PathLike[str], model_path: str | os.PathLike[str]) -> None:
    """Raise KBError unless the adapter at ``adapter`` was trained on the model at ``model_path``.

    Accepted: ``adapter_config.json``'s ``base_model_name_or_path`` (or a ``kb_adapter.json`` /
    ``manifest.json`` ``base_model``) equal to the model folder, its name, or its manifest base name.
    """
    a = Path(adapter)
    cfg_file = a / "adapter_config.json"
    if not cfg_file.is_file():
        raise KBError(f"not a LoRA adapter folder (no adapter_config.json): {a}")
    declared: list[str] = []
    for fname, key in (("adapter_config.json", "base_model_name_or_path"), ("kb_adapter.json", "base_model"),
                       ("manifest.json", "base_model")):
        try:
            value = json.loads((a / fname).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
        if value:
            declared.append(str(value))
    mp = Path(model_path)
    accepted = {str(mp), str(mp.resolve()), mp.name, base_model_name(mp)}
    if not declared:
        logger.warning("adapter %s does not declare its base model; assuming %s", a, mp.name)
        return
    for value in declared:
        if value in accepted or Path(value).name in accepted or base_model_name(value) in accepted:
            return
    raise KBError(f"adapter {a} was trained on {declared[0]!r}, not on the loaded generator "
                  f"{base_model_name(mp)!r}; pass the matching model_path or retrain the adapter")


# ---------------------------------------------------------------- process cache

_MODELS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


def _load(path: Path, device: str, dtype: Any, int8: bool, adapter: Path | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        model = model.merge_and_unload()  # merged: same speed as the base model
    model.to(device)
    model.eval()
    if int8:
        if device != "cpu":
            raise ConfigError("Generator int8=True is only supported on device 'cpu'")
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    logger.info("generator %s loaded on %s (%s%s%s) in %.2f s", path.name, device, dtype,
                ", int8" if int8 else "", f", adapter {adapter.name}" if adapter else "",
                time.perf_counter() - t0)
    return model, tok


class _StopFlag:
    """A stopping criterion: an external abort event and/or a sentence limit on the new text."""

    def __init__(self, tokenizer: Any, prompt_len: int, max_sentences: int | None) -> None:
        self.event = threading.Event()
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.max_sentences = max_sentences

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.event.is_set()
        if not stop and self.max_sentences:
            text = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=True)
            stop = len(SENTENCE_END_RE.findall(text)) >= self.max_sentences
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class Generator:
    """A chat model that turns messages into text. Cheap to construct: the model loads on first use."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, device: str = "auto",
                 dtype: str = "auto", int8: bool | None = None, adapter: str | os.PathLike[str] | None = None,
                 reuse_prefix: bool = True) -> None:
        if device not in DEVICES and not device.startswith("cuda:"):
            raise ConfigError(f"Generator.device must be one of {', '.join(map(repr, DEVICES))} or 'cuda:N'; "
                              f"got {device!r}")
        if dtype not in DTYPES:
            raise ConfigError(f"Generator.dtype must be one of {', '.join(map(repr, DTYPES))}; got {dtype!r}")
        self._model_path = Path(model_path) if model_path else None
        if self._model_path is not None and self._model_path.suffix.lower() == ".gguf":
            self._model_path = ensure_converted(self._model_path)
        if self._model_path is not None and not self._model_path.exists():
            raise ModelNotFound(f"generator model not found: {self._model_path}")
        self._device, self._dtype, self._int8 = device, dtype, int8
        self.adapter = Path(adapter) if adapter else None
        self.reuse_prefix = reuse_prefix
        self._model: Any = None
        self._tok: Any = None
        self._prefix: dict[str, tuple[list[int], Any]] = {}
        self._lock = threading.Lock()
        if self.adapter is not None:
            check_adapter_base(self.adapter, self.model_path)

    # -- loading
    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = default_generator_path()
        return self._model_path

    def warm_up(self) -> Generator:
        """Load the model now (otherwise it loads on first use)."""
        if self._model is None:
            device = resolve_device(self._device, "generator")
            dtype = resolve_dtype(self._dtype, device)
            int8 = bool(self._int8) if self._int8 is not None else False
            key = (str(self.model_path.resolve()), device, str(dtype), int8,
                   str(self.adapter.resolve()) if self.adapter else None)
            with _MODELS_LOCK:
                if key not in _MODELS:
                    _MODELS[key] = _load(self.model_path, device, dtype, int8, self.adapter)
                self._model, self._tok = _MODELS[key]
            self.device = device
        return self

    def load_adapter(self, adapter: str | os.PathLike[str]) -> Generator:
        """Switch to base model + LoRA adapter (checked against the base model, merged on load)."""
        check_adapter_base(adapter, self.model_path)
        self.adapter = Path(adapter)
        self._model = self._tok = None
        self._prefix.clear()
        return self.warm_up()

    @property
    def tokenizer(self) -> Any:
        return self.warm_up()._tok

    @property
    def model(self) -> Any:
        return self.warm_up()._model

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- prompting
    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text (:func:`kb_assistant.prompts.render`: chat template, or plain for base models)."""
        from .prompts import render

        return render(self.tokenizer, messages)

    def _prepare(self, messages: list[dict[str, str]], config: GenerationConfig) -> tuple[dict, Any]:
        import torch

        tok = self.tokenizer
        text = self.render(messages)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device),
                                  "attention_mask": torch.ones_like(ids).to(self.device),
                                  "pad_token_id": tok.pad_token_id, **config.to_generate_kwargs()}
        cache = self._prefix_cache(messages, ids[0].tolist()) if config.num_beams == 1 else None
        if cache is not None:
            kwargs["past_key_values"] = cache
        stop = _StopFlag(tok, ids.shape[1], config.max_sentences)
        from transformers import StoppingCriteriaList

        kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        if config.seed is not None:
            torch.manual_seed(config.seed)
        return kwargs, stop

    def _prefix_cache(self, messages: list[dict[str, str]], ids: list[int]) -> Any:
        """A copy of the KV cache of the system message's tokens, when they prefix ``ids``."""
        if not self.reuse_prefix or self._int8 or not messages or messages[0]["role"] != "system":
            return None
        import torch

        key = messages[0]["content"]
        with self._lock:
            entry = self._prefix.get(key)
            if entry is None:
                tok = self.tokenizer
                sys_text = (tok.apply_chat_template(messages[:1], tokenize=False) if tok.chat_template
                            else messages[0]["content"].strip())
                p_ids = tok(sys_text, add_special_tokens=False)["input_ids"]
                p_ids = p_ids[:-1]  # leave the boundary token to the prompt: tokenization may merge there
                if len(p_ids) < 8:
                    return None
                with torch.no_grad():
                    out = self.model(torch.tensor([p_ids], device=self.device), use_cache=True)
                entry = (p_ids, out.past_key_values)
                if len(self._prefix) > 8:
                    self._prefix.clear()
                self._prefix[key] = entry
        p_ids, cache = entry
        if len(ids) <= len(p_ids) or ids[: len(p_ids)] != p_ids:
            return None
        return copy.deepcopy(cache)

    # -- generation
    def generate(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> str:
        """Generate a reply to chat ``messages`` (list of {"role", "content"})."""
        import torch

        config = config or GenerationConfig()
        kwargs, _ = self._prepare(messages, config)
        n_prompt = kwargs["input_ids"].shape[1]
        with torch.no_grad():
            out = self.model.generate(**kwargs)
        text = self.tokenizer.decode(out[0, n_prompt:], skip_special_tokens=True)
        return truncate_sentences(text, config.max_sentences)

    def generate_batch(self, messages_list: list[list[dict[str, str]]],
                       config: GenerationConfig | None = None, sinks: Any = ()) -> list[str]:
        """Replies to several chats in one forward pass per step (left padding; greedy replies equal
        :meth:`generate`'s); ``sinks`` (:class:`~kb_assistant.generation_batch.RowSink`, one per chat)
        receive each row's text as it comes and may stop their row."""
        from .generation_batch import run_batch

        return run_batch(self, messages_list, config or GenerationConfig(), sinks)

    def stream(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> Iterator[str]:
        """Yield text pieces as they are generated; closing the iterator early stops generation."""
        import torch
        from transformers import TextIteratorStreamer

        config = config or GenerationConfig()
        if config.num_beams > 1:
            raise ConfigError("streaming needs num_beams=1")
        kwargs, stop = self._prepare(messages, config)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        kwargs["streamer"] = streamer
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.no_grad():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # re-raised in the consumer
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="kb-generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.event.set()
            thread.join()
        if errors:
            raise errors[0]
