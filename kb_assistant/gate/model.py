"""The fitted unknown gate: a logistic model over standardised :mod:`~kb_assistant.gate.features`
giving P(the question is answerable from its hits), and the threshold below which the answer is the
"unknown" template. Stored in the knowledge base's ``config.toml`` (``[gate]``) with what it was
fitted on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method; returns (w0, w1, ...) (bias first)."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    reg = np.eye(len(w)) * l2
    reg[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        grad = xb.T @ (p - y) + reg @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + reg + np.eye(len(w)) * 1e-9
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


@dataclass
class GateModel:
    """``p = sigmoid(bias + weights · (x - mean) / scale)``; unknown when ``p < threshold``."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def probability(self, feats: dict[str, float]) -> float:
        x = (np.asarray([feats.get(f, 0.0) for f in self.features]) - np.asarray(self.mean)) / np.asarray(
            self.scale)
        z = self.bias + float(np.dot(self.weights, x))
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))

    def answerable(self, feats: dict[str, float]) -> bool:
        return self.probability(feats) >= self.threshold

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, features: Sequence[str], *, l2: float = 1.0) -> GateModel:
        """Fit on a feature matrix ``x`` (rows = probes) and labels ``y`` (1 = answerable); threshold 0.5."""
        mean = x.mean(axis=0)
        scale = np.where(x.std(axis=0) > 1e-6, x.std(axis=0), 1.0)
        w = fit_logistic((x - mean) / scale, y, l2=l2)
        return cls(list(features), mean.tolist(), scale.tolist(), w[1:].tolist(), float(w[0]), 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": [round(v, 6) for v in self.mean],
                "scale": [round(v, 6) for v in self.scale], "weights": [round(v, 6) for v in self.weights],
                "bias": round(self.bias, 6), "threshold": round(self.threshold, 6), "info": dict(self.info)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateModel:
        def floats(key: str) -> list[float]:
            return [float(v) for v in data[key]]

        return cls(list(data["features"]), floats("mean"), floats("scale"), floats("weights"),
                   float(data["bias"]), float(data["threshold"]), dict(data.get("info") or {}))
