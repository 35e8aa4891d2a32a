"""Settings of the answer stage and the server: ``[query]``, ``[generation]``, ``[gate]``, ``[safety]``,
``[server]``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..models.registry import (
    BACKENDS,
    LLAMA_CPP_KEYS,
    MODELS,
    N_CTX_RANGE,
    N_THREADS_RANGE,
    TORCH_KEYS,
    check_generator_kwargs,
)
from ..settings import Settings, setting
from .pipeline import DEVICES, DTYPES

ANSWER_MODES = ("auto", "generate", "extractive")


@dataclass
class QueryConfig(Settings):
    """Answer-stage settings: the unknown gate, the prompt budget, the extractive fallback, chat."""

    SECTION: ClassVar[str] = "query"
    k: int = setting(5, lo=1, hi=100, doc="passages retrieved per question")
    unknown_threshold: float = setting(
        0.34, lo=0.0, hi=1.0,
        doc="calibrated relevance below which the answer is \"unknown\" (the generator is not called); "
            "0.34 is what `kb calibrate` picked on the dev QA set; re-run it on your own QA file")
    max_context_tokens: int = setting(256, lo=32, hi=32_768,
                                      doc="token budget of the numbered passages in the prompt")
    unknown_text: dict[str, str] = setting(factory=dict, doc="unknown answer per language, `{en = \"...\"}`")
    max_history_turns: int = setting(3, lo=0, hi=100,
                                     doc="turns a chat session keeps to rewrite follow-up questions")
    cache_size: int = setting(256, lo=0, hi=1_000_000,
                              doc="answers kept in the LRU cache (0: off); emptied by any ingest or delete")
    support_threshold: float = setting(0.5, lo=0.0, hi=1.0, doc="minimum fraction of the answer's terms "
                                                                "found in the evidence to keep a generated "
                                                                "answer")
    answer_mode: str = setting("auto", choices=ANSWER_MODES,
                               doc="`auto`: generate (with the extractive fallback) for `generate_langs`, "
                                   "extractive otherwise; `generate`: always; `extractive`: never call the "
                                   "generator")
    generate_langs: list[str] = setting(factory=lambda: ["en"], doc="languages the generator writes well "
                                                                    "enough (SmolLM2-135M cannot write "
                                                                    "Chinese: measured)")
    evidence_sentences: int = setting(3, lo=1, hi=20, doc="best-matching sentences put in the prompt")
    evidence_dense_weight: float = setting(0.7, lo=0.0, hi=1.0,
                                           doc="quoted (extractive) answers: share of a sentence's evidence "
                                               "score given by its embedding similarity to the question "
                                               "(the rest: question-term overlap); 0: terms only. The "
                                               "generator's prompt keeps term-chosen evidence. 0.7 chosen "
                                               "on the tune splits")
    extractive_sentences: int = setting(3, lo=1, hi=20,
                                        doc="evidence sentences an extractive answer quotes; 3 chosen on the "
                                            "tune splits of both dev corpora (facts +3.1 / +2.0 points over "
                                            "2, quotes about 100 characters longer)")
    extractive_chars: int = setting(300, lo=0, hi=10_000,
                                    doc="the best quoted sentence is widened with its neighbours in the "
                                        "passage up to this many characters (0: the sentence alone); 300 "
                                        "chosen on the tune splits of both dev corpora (facts +8 / +10 "
                                        "points over 0)")
    extractive_min_overlap: float = setting(0.0, lo=0.0, hi=1.0,
                                            doc="a sentence after the first is quoted only when it holds at "
                                                "least this share of the question terms the best one holds "
                                                "(> 0 also turns the widening off)")
    draft_quote_agreement: float = setting(0.5, lo=0.0, hi=1.0,
                                           doc="a generated draft is kept only when at least this share "
                                               "of its new words (those the question does not hold) are in "
                                               "the sentences the extractive answer would quote (0: off); "
                                               "an English question whose answer is only in Chinese text "
                                               "then gets the marked Chinese quote. 0.5 measured on the "
                                               "tune splits: PDF facts 54.9 -> 56.9 %, cite-ok 82.5 -> "
                                               "85.0 %, the HTML corpus unchanged")
    max_new_tokens: int = setting(48, lo=1, hi=4096, doc="generation budget of an answer")
    max_sentences: int | None = setting(1, lo=1, hi=100,
                                        doc="answers are cut after this many sentences (unset: no limit)")
    stream_check_terms: int = setting(2, lo=1, hi=100,
                                      doc="the draft's first sentence, or this many content words the "
                                          "question does not hold, are held back and checked before "
                                          "anything is shown (ask and ask_stream). 2 on the tune splits of "
                                          "both dev corpora: first token p50 -36 % and facts equal or "
                                          "better than 4; 1 quotes more, half as many answers generated")
    audit_log: str | None = setting(None, doc="JSONL audit log of every answer (relative paths are inside "
                                              "the knowledge base folder); unset: off")


@dataclass
class GenerationConfig(Settings):
    """Decoding parameters (also per call: ``kb.ask(q, temperature=0.7)``); temperature 0 = greedy."""

    SECTION: ClassVar[str] = "generation"
    max_new_tokens: int = setting(48, lo=1, hi=4096, doc="tokens generated at most")
    temperature: float = setting(0.0, lo=0.0, hi=5.0, doc="0 = greedy decoding; > 0 samples")
    top_k: int = setting(50, lo=0, hi=1000, doc="sampling: keep the k most likely tokens (0: off)")
    top_p: float = setting(1.0, lo=0.0, hi=1.0, doc="sampling: nucleus probability mass (must be > 0)")
    repetition_penalty: float = setting(1.1, lo=1.0, hi=3.0, doc="1.0 = none")
    num_beams: int = setting(1, lo=1, hi=16, doc="beam search width (1: off)")
    length_penalty: float = setting(1.0, lo=-5.0, hi=5.0, doc="beam search only")
    seed: int | None = setting(None, lo=0, hi=2**32 - 1,
                               doc="random seed for sampling (reproducible answers)")
    max_sentences: int | None = setting(None, lo=1, hi=100,
                                        doc="stop after this many complete sentences (unset: no limit)")
    do_sample: bool = field(init=False, default=False)

    def check(self) -> None:
        if self.top_p == 0.0:
            raise ConfigError("GenerationConfig.top_p must be in (0.0, 1.0]; got 0.0")
        self.do_sample = self.temperature > 0.0

    def to_generate_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
                              "num_beams": self.num_beams, "repetition_penalty": self.repetition_penalty}
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        else:  # silence warnings about sampling flags in greedy mode
            kw.update(temperature=None, top_k=None, top_p=None)
        if self.num_beams > 1:
            kw["length_penalty"] = self.length_penalty
        return kw


@dataclass
class GenerationSection(GenerationConfig):
    """The ``[generation]`` table: which generator runs where, plus the default decoding parameters."""

    model: str | None = setting(None, choices=tuple(MODELS),
                                doc="registry model (`kb models list`; install with `kb models install "
                                    "NAME`); unset: the embedded SmolLM2-135M-Instruct")
    model_path: str | None = setting(None, doc="local folder of a transformers causal LM, or a `.gguf` file "
                                               "(converted once for torch), instead of `model`")
    backend: str = setting("torch", choices=BACKENDS,
                           doc="`torch`: the converted safetensors folder (LoRA adapters, `kb tune`); "
                               "`llama_cpp`: the GGUF as it is, faster on CPU (the `llamacpp` extra)")
    device: str = setting("auto", choices=DEVICES, doc="where the generator runs (`cuda:N` is accepted "
                                                       "too; llama_cpp: auto, cpu or cuda)")
    dtype: str = setting("auto", choices=DTYPES,
                         doc="torch: weights dtype; `auto` = bf16 (fp16 where unsupported) on CUDA, fp32 on "
                             "CPU")
    int8: bool | None = setting(None, doc="torch: dynamic int8 quantisation of the linear layers (CPU only)")
    reuse_prefix: bool = setting(True, doc="torch: reuse the KV cache of the fixed system prompt across "
                                           "questions (llama_cpp always reuses the common prefix)")
    n_threads: int | None = setting(None, lo=N_THREADS_RANGE[0], hi=N_THREADS_RANGE[1],
                                    doc="llama_cpp: CPU threads (unset: the CPU count, at most 8)")
    n_ctx: int = setting(2048, lo=N_CTX_RANGE[0], hi=N_CTX_RANGE[1],
                         doc="llama_cpp: context window in tokens (prompt + answer)")
    adapter: str | None = setting(None, doc="LoRA adapter folder relative to the KB folder (torch only); "
                                            "set by `kb tune`")
    remote_url: str | None = setting(None, doc="base URL of an OpenAI-compatible server (vLLM, llama.cpp "
                                               "server, ...), e.g. `http://127.0.0.1:8080/v1`; unset: the "
                                               "local model")
    remote_model: str | None = setting(None, doc="model name sent to the remote server (unset: its first "
                                                 "model from /v1/models)")
    remote_api_key_env: str | None = setting(None, doc="name of the environment variable holding the "
                                                       "remote server's API key (never the key itself)")
    remote_timeout_s: float = setting(60.0, lo=0.1, hi=3600.0, doc="timeout of one remote request")

    FACTORY_KEYS: ClassVar[tuple[str, ...]] = ("backend", "model", "model_path")

    def validate(self) -> None:
        if isinstance(self.device, str) and self.device.startswith("cuda:"):
            device, self.device = self.device, "cuda"
            try:
                super().validate()
            finally:
                self.device = device
            return
        super().validate()

    def check(self) -> None:
        """Cross-field rules (at open): a known backend, model or model_path, only the backend's own
        settings changed from their defaults, no adapter with llama_cpp."""
        super().check()
        defaults = {f.name: f.default for f in fields(self) if f.init}
        changed = {k: getattr(self, k) for k in dict.fromkeys(TORCH_KEYS + LLAMA_CPP_KEYS)
                   if getattr(self, k) != defaults[k]}
        check_generator_kwargs(backend=self.backend, model=self.model, model_path=self.model_path,
                               adapter=self.adapter, **changed)
        if self.remote_url is not None and not self.remote_url.startswith(("http://", "https://")):
            raise ConfigError(f"GenerationSection.remote_url must start with http:// or https://; "
                              f"got {self.remote_url!r}")

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`kb_assistant.models.factory.make_generator`: the backend, the
        model, and the backend's own settings."""
        keys = TORCH_KEYS if self.backend == "torch" else LLAMA_CPP_KEYS
        return {k: getattr(self, k) for k in (*self.FACTORY_KEYS, *keys) if getattr(self, k) is not None}

    def decoding(self) -> dict[str, Any]:
        """The decoding parameters set in config.toml (only those that differ from the defaults)."""
        base = GenerationConfig()
        return {f.name: getattr(self, f.name) for f in fields(GenerationConfig)
                if f.init and getattr(self, f.name) != getattr(base, f.name)}


GATE_FEATURES = ["dense_top", "bm25_top", "coverage", "absent_name", "xling_top"]


@dataclass
class GateConfig(Settings):
    """The self-calibrating unknown gate: fitted per knowledge base on probe questions it generates about
    itself (``kb tune``, ``KnowledgeBase.calibrate_gate()``, and automatically after an ingest that
    changed enough of it); ``fitted`` holds the fitted models and what they were fitted on."""

    SECTION: ClassVar[str] = "gate"
    mode: str = setting("auto", choices=("auto", "fitted", "threshold"),
                        doc="`fitted`: the knowledge base's own fitted gate; `threshold`: the top hit's "
                            "calibrated score against `[query] unknown_threshold`; `auto`: fitted when "
                            "fitted, else threshold")
    probes: int = setting(200, lo=20, hi=100_000, doc="answerable probe questions generated per language "
                                                      "(as many negatives again)")
    features: list[str] = setting(factory=lambda: list(GATE_FEATURES),
                                  doc="the signals the gate combines (`kb_assistant.gate.features`); chosen "
                                      "on the tune splits of both dev corpora")
    target_unknown_recall: float = setting(0.6, lo=0.0, hi=1.0,
                                           doc="share of the negative probes the fitted gate must refuse")
    max_false_unknown: float = setting(0.05, lo=0.0, hi=1.0,
                                       doc="share of the answerable probes it may refuse (when both targets "
                                           "can be met); 0.05 chosen on the tune splits of both dev corpora "
                                           "(users' questions are harder than probes: 0.1 refused 10-25 %)")
    bootstrap: int = setting(25, lo=0, hi=1000,
                             doc="average the model and its threshold over this many resamples of the probes "
                                 "(0 or 1: one fit); steadies the threshold between refits")
    auto_refit_share: float | None = setting(0.2, lo=0.0, hi=1.0,
                                             doc="refit after an ingest that added, changed or removed more "
                                                 "than this share of the chunks (unset: never "
                                                 "automatically)")
    min_chunks: int = setting(100, lo=1, hi=10_000_000,
                              doc="knowledge bases with fewer chunks keep the threshold gate (too little "
                                  "text for probes)")
    seed: int = setting(0, doc="random seed of the probes")
    fitted: dict[str, Any] = setting(factory=dict, doc="written by the fit: per language the model "
                                                       "(features, weights, threshold) and what it was "
                                                       "fitted on")

    def check(self) -> None:
        from ..gate.features import FEATURES

        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or not self.features:
            raise ConfigError(f"GateConfig.features must be a non-empty list of {', '.join(FEATURES)}; "
                              f"got {self.features!r}")


REFUSAL_TEXT = {
    "en": "Sorry, I can't help with that question.",
    "zh": "抱歉，该问题涉及敏感内容，无法回答。",
}


def load_word_list(path: str | os.PathLike[str]) -> list[str]:
    """Read a sensitive-word list: one word per line, ``#`` comments and blank lines ignored."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


@dataclass
class SafetyConfig(Settings):
    """Sensitive words (refuse questions, mask answers) and PII redaction switches."""

    SECTION: ClassVar[str] = "safety"
    enabled: bool = setting(False, doc="apply the sensitive words and PII redaction to questions and answers "
                                       "(a `[safety]` table that sets any other key turns it on)")
    sensitive_words: list[str] = setting(factory=list, doc="questions holding one are refused; answers "
                                                           "holding one are masked (case-insensitive "
                                                           "substring)")
    word_list_path: str | None = setting(None, doc="file with one word per line, merged into "
                                                   "`sensitive_words`")
    refusal_text: dict[str, str] = setting(factory=lambda: dict(REFUSAL_TEXT),
                                           doc="text of a refused question per language (keys `en` and `zh` "
                                               "required)")
    mask: str = setting("***", doc="replacement of a sensitive word in an answer")
    redact_answers: bool = setting(True, doc="replace e-mails, phone, ID and card numbers in answers with "
                                             "placeholders")
    redact_audit: bool = setting(True, doc="redact the same PII in the audit log")

    @classmethod
    def normalise(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "enabled": True} if data and "enabled" not in data else data

    def check(self) -> None:
        if self.word_list_path and not Path(self.word_list_path).is_file():
            raise ConfigError(f"SafetyConfig.word_list_path: no such file {self.word_list_path}")
        if not all(w.strip() for w in self.sensitive_words):
            raise ConfigError("SafetyConfig.sensitive_words must be a list of non-empty strings")
        missing = {"en", "zh"} - set(self.refusal_text)
        if missing:
            raise ConfigError(f"SafetyConfig.refusal_text must have keys 'en' and 'zh'; missing {missing}")

    def words(self) -> list[str]:
        """``sensitive_words`` plus the words of ``word_list_path``."""
        if not self.word_list_path:
            return list(self.sensitive_words)
        return list(self.sensitive_words) + load_word_list(self.word_list_path)


@dataclass
class ServerConfig(Settings):
    """Limits of ``kb serve`` (its flags override them); a refusal is a 4xx naming the setting to raise."""

    SECTION: ClassVar[str] = "server"
    max_upload_mb: float = setting(20.0, lo=0.001, hi=1e5, doc="one uploaded file (413 beyond)")
    max_question_chars: int = setting(4000, lo=1, hi=10**6, doc="a question, query or last chat message")
    max_conversation_chars: int = setting(100_000, lo=1, hi=10**8, doc="the earlier messages, together")
    max_question_tokens: int = setting(512, lo=1, hi=10**6, doc="question + history terms (embedder tokens)")
    rate_limit_per_minute: float = setting(600.0, lo=0, hi=1e6, doc="per API key or client address; 0: off")
    request_timeout_s: float = setting(120.0, lo=0.1, hi=86_400, doc="longer answers are stopped (503/504)")
    queue_size: int = setting(32, lo=0, hi=10**5, doc="answers waiting for the generator (503 beyond)")
    allowed_hosts: list[str] = setting(factory=list, doc="Host names accepted without keys besides localhost")
    batch_max: int = setting(16, lo=1, hi=256,
                             doc="answers generated together in one forward pass (dynamic batching; 1: "
                                 "one at a time); 16 measured cheapest per answer on 2 CPU cores "
                                 "(docs/benchmarks.md)")
    batch_wait_ms: float = setting(20.0, lo=0.0, hi=10_000.0,
                                   doc="how long the first answer of a batch waits for others to join")


#: settings that older versions wrote and that no longer exist: dropped on load with a warning
