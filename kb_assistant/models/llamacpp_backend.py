"""A generator running a GGUF directly with llama.cpp (``llama-cpp-python``, the ``llamacpp`` extra).

Same interface as :class:`kb_assistant.generation.Generator` (``generate``, ``stream``, ``count_tokens``,
``render``, ``warm_up``, ``model_path``) plus ``close``. The quantised weights (e.g. Q4_K_M) are used as
they are, which on a CPU is several times faster than the fp32 weights torch runs. The prompt is
rendered by :func:`kb_assistant.prompts.render` from the chat template in the GGUF metadata; llama.cpp
keeps the KV cache of the previous prompt and re-uses its longest common prefix (the system message).
``llama_cpp`` is imported on first use only.
"""

from __future__ import annotations

import codecs
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelNotFound
from ..text import SENTENCE_END_RE, truncate_sentences
from .registry import LLAMA_CPP_DEVICES, N_CTX_RANGE, N_THREADS_RANGE

logger = logging.getLogger(__name__)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError("[generation] backend 'llama_cpp' needs the llamacpp extra "
                          "(pip install 'kb-assistant[llamacpp]'; builds llama.cpp from source)") from exc
    return llama_cpp


class _GGUFChatTemplate:
    """The chat template in a GGUF's metadata behind the two tokenizer members
    :func:`kb_assistant.prompts.render` reads, rendered like transformers renders it."""

    def __init__(self, llm: Any) -> None:
        self.chat_template = llm.metadata.get("tokenizer.chat_template") or None
        self._format: Any = None
        if self.chat_template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text(token: int) -> str:
                return llm._model.token_get_text(token) if token != -1 else ""

            self._format = Jinja2ChatFormatter(self.chat_template, eos_token=text(llm.token_eos()),
                                               bos_token=text(llm.token_bos()), add_generation_prompt=True)

    def apply_chat_template(self, messages: list[dict[str, str]], *, tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        if tokenize or not add_generation_prompt:
            raise ValueError("only the prompt text with the generation cue is rendered here")
        return self._format(messages=messages).prompt


class LlamaCppGenerator:
    """A chat model in a GGUF file, run by llama.cpp. Cheap to construct: the model loads on first use."""

    def __init__(self, model_path: str | os.PathLike[str], *, n_threads: int | None = None,
                 n_ctx: int = 2048, device: str = "auto") -> None:
        path = Path(model_path).expanduser()
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"backend 'llama_cpp' needs a .gguf model_path (or a [generation] model "
                              f"name); got {path}")
        if not path.is_file():
            raise ModelNotFound(f"generator model not found: {path}")
        if device not in LLAMA_CPP_DEVICES and not device.startswith("cuda:"):
            raise ConfigError(f"LlamaCppGenerator.device must be one of "
                              f"{', '.join(map(repr, LLAMA_CPP_DEVICES))}; got {device!r}")
        for name, value, (lo, hi) in (("n_threads", n_threads, N_THREADS_RANGE),
                                      ("n_ctx", n_ctx, N_CTX_RANGE)):
            if value is not None and not lo <= int(value) <= hi:
                raise ConfigError(f"LlamaCppGenerator.{name} must be in [{lo}, {hi}]; got {value!r}")
        self.model_path = path
        self.adapter = None  # LoRA adapters need the torch backend
        self.n_threads = int(n_threads) if n_threads else min(os.cpu_count() or 1, 8)
        self.n_ctx = int(n_ctx)
        self._device = device
        self.device = "cpu"
        self._llm: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()  # one llama.cpp context: one generation at a time

    # -- loading
    def warm_up(self) -> LlamaCppGenerator:
        """Load the model now (otherwise it loads on first use)."""
        if self._llm is not None:
            return self
        llama_cpp = _import_llama_cpp()
        gpu = self._device.startswith("cuda") or (self._device == "auto" and
                                                   bool(llama_cpp.llama_supports_gpu_offload()))
        t0 = time.perf_counter()
        llm = llama_cpp.Llama(str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                              n_threads_batch=self.n_threads, n_gpu_layers=-1 if gpu else 0, verbose=False)
        self._formatter = _GGUFChatTemplate(llm)
        self.device = "cuda" if gpu else "cpu"
        self._llm = llm
        logger.info("generator %s loaded by llama.cpp on %s (%d threads) in %.2f s", self.model_path.name,
                    self.device, self.n_threads, time.perf_counter() - t0)
        return self

    def close(self) -> None:
        """Free the model (it loads again on next use)."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
            self._llm = self._formatter = None

    @property
    def llm(self) -> Any:
        return self.warm_up()._llm

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- prompting
    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text (:func:`kb_assistant.prompts.render` over the GGUF's chat template)."""
        from ..prompts import render

        self.warm_up()
        return render(self._formatter, messages)

    def _is_end(self, token: int) -> bool:
        llama_cpp = _import_llama_cpp()
        try:
            return bool(llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))
        except AttributeError:  # older bindings
            return token == self._llm.token_eos()

    def _tokens(self, messages: list[dict[str, str]], config: Any) -> Iterator[str]:
        """Decode text pieces until end of generation, ``max_new_tokens`` or ``max_sentences``."""
        from ..config import GenerationConfig

        config = config or GenerationConfig()
        if config.num_beams > 1:
            raise ConfigError("backend 'llama_cpp' decodes with num_beams=1 only; use backend 'torch' "
                              "for beam search")
        llm = self.llm
        prompt = llm.tokenize(self.render(messages).encode("utf-8"), add_bos=False, special=True)
        if len(prompt) + config.max_new_tokens > self.n_ctx:
            raise ConfigError(f"prompt of {len(prompt)} tokens + max_new_tokens {config.max_new_tokens} "
                              f"exceeds n_ctx {self.n_ctx}; raise [generation] n_ctx")
        if config.seed is not None:
            llm.set_seed(config.seed)
        sampling = {"temp": config.temperature, "top_k": config.top_k if config.do_sample else 1,
                    "top_p": config.top_p, "min_p": 0.0, "repeat_penalty": config.repetition_penalty}
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, n = "", 0
        with self._lock:
            tokens = llm.generate(prompt, **sampling)
            try:
                for token in tokens:
                    if self._is_end(token):
                        break
                    piece = decoder.decode(llm.detokenize([token], special=False))
                    n += 1
                    if piece:
                        text += piece
                        yield piece
                    limit = config.max_sentences
                    if n >= config.max_new_tokens or (limit and len(SENTENCE_END_RE.findall(text)) >= limit):
                        break
            finally:
                tokens.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    # -- generation
    def generate(self, messages: list[dict[str, str]], config: Any = None) -> str:
        """Generate a reply to chat ``messages`` (list of {"role", "content"})."""
        text = "".join(self._tokens(messages, config))
        return truncate_sentences(text, config.max_sentences if config else None)

    def stream(self, messages: list[dict[str, str]], config: Any = None) -> Iterator[str]:
        """Yield text pieces as they are generated; closing the iterator early stops generation."""
        yield from self._tokens(messages, config)
