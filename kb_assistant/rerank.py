"""Optional cross-encoder reranking of the fused top-N (off unless ``retrieval.reranker_path`` is set).

Any sentence-transformers ``CrossEncoder`` saved at a local path works (e.g. a fine-tuned MiniLM
cross-encoder). The model loads on first use and is cached per process; scores are the model's raw
relevance outputs (higher = more relevant) and only re-order hits, they do not replace ``Hit.score``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelNotFound
from .lazy import Lazy

logger = logging.getLogger(__name__)

_CACHE: dict[str, CrossEncoderReranker] = {}
_CACHE_LOCK = threading.Lock()


class CrossEncoderReranker:
    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32,
                 max_length: int = 512) -> None:
        self.path = str(path)
        if not Path(self.path).exists():
            raise ModelNotFound(f"reranker model not found at {self.path} (retrieval.reranker_path)")
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Lazy[Any] = Lazy(self._load)

    def _load(self) -> Any:
        from sentence_transformers import CrossEncoder

        from .devices import resolve_device

        device = resolve_device(self.device, "reranker")
        model = CrossEncoder(self.path, device=device, max_length=self.max_length, local_files_only=True)
        logger.info("loaded reranker %s on %s", self.path, device)
        return model

    @property
    def model(self) -> Any:
        return self._model.get()

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance of each text to the query (one float per text)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                    show_progress_bar=False, convert_to_numpy=True)
        scores = np.asarray(scores, dtype=np.float32)
        return scores[:, -1] if scores.ndim == 2 else scores

    def rerank(self, query: str, texts: Sequence[str]) -> list[int]:
        """Indexes of ``texts`` from most to least relevant."""
        return np.argsort(-self.score(query, texts), kind="stable").tolist()


def get_reranker(path: str | os.PathLike[str]) -> CrossEncoderReranker:
    key = str(path)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = CrossEncoderReranker(key)
        return _CACHE[key]
