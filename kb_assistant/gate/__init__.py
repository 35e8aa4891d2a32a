"""The self-calibrating unknown gate: each knowledge base fits its own, from probe questions it makes
about itself (no labelled data), on signals that mean the same in every corpus.

    models, report = fit_gate(kb.search, kb.docstore, kb.indexes.sparse)   # one model per language
    gate = Gate(models, kb.indexes.sparse)
    ok, p, feats = gate.decide(question, hits)      # ok False -> the "unknown" template

``features`` computes the signals, ``probes`` makes the questions, ``model`` holds the fitted logistic
model. ``kb tune`` / :meth:`KnowledgeBase.calibrate_gate` fit it and store it in ``config.toml``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..text import detect_lang
from ..types import Hit
from .features import FEATURES, feature_matrix, gate_features
from .model import GateModel, fit_logistic
from .probes import Probe, answerable_probes, offtopic_probes, reworded_probes, swapped_probes

__all__ = ["FEATURES", "Gate", "GateModel", "Probe", "fit_gate", "fit_logistic", "gate_features",
           "make_probes"]

logger = logging.getLogger(__name__)

SearchFn = Callable[..., list[Hit]]


class Gate:
    """The fitted :class:`GateModel` of each language, applied to a question and its hits."""

    def __init__(self, models: dict[str, GateModel], stats: Any) -> None:
        if not models:
            raise ValueError("Gate needs at least one fitted model")
        self.models = models
        self.stats = stats

    @classmethod
    def from_config(cls, fitted: dict[str, Any], stats: Any) -> Gate | None:
        """The gate stored in ``[gate] fitted`` (None when nothing is fitted)."""
        models = {lang: GateModel.from_dict(d) for lang, d in (fitted.get("models") or {}).items()}
        return cls(models, stats) if models else None

    def model_for(self, question: str) -> GateModel:
        lang = detect_lang(question)
        return self.models.get(lang) or self.models.get("en") or next(iter(self.models.values()))

    def decide(self, question: str, hits: Sequence[Hit]) -> tuple[bool, float, dict[str, float]]:
        """(answerable?, P(answerable), the features)."""
        if not hits:
            return False, 0.0, {}
        feats = gate_features(question, hits, self.stats)
        model = self.model_for(question)
        p = model.probability(feats)
        return p >= model.threshold, p, feats


def make_probes(docstore: Any, stats: Any, n: int, seed: int = 0) -> list[Probe]:
    """Per language of the knowledge base's chunks: up to ``n`` answerable probes from random chunks,
    reworded copies of half of them, and about as many negatives (half off-topic bank questions, half
    answerable probes with their subject swapped for an absent one)."""
    rng = random.Random(seed)
    ids, _, langs = docstore.catalog_rows()
    by_lang: dict[str, list[int]] = {}
    for i, lang in zip(ids.tolist(), langs, strict=True):
        by_lang.setdefault(lang or "en", []).append(i)
    out: list[Probe] = []
    for lang, lang_ids in sorted(by_lang.items()):
        rng.shuffle(lang_ids)
        take = lang_ids[: max(3 * n, 50)]
        rows = docstore.get_chunks(take)
        pos = [p for p in answerable_probes([rows[i] for i in take if i in rows], n, rng) if p.lang == lang]
        if not pos:
            continue
        off = offtopic_probes(stats, {lang})
        rng.shuffle(off)
        swapped = swapped_probes(pos, stats, rng)
        rng.shuffle(swapped)
        half = max(1, len(pos) // 2)
        out += pos + reworded_probes(pos, stats, rng) + off[:half] + swapped[:half]
    return out


def _bagged(base: GateModel, x: np.ndarray, y: np.ndarray, l2: float, n: int, rng: random.Random,
            targets: dict[str, float]) -> GateModel:
    """The average of ``n`` models fitted on stratified resamples of the probes (standardised with
    ``base``'s mean and scale, ``base`` fitted on them all), each with the threshold its resample chooses."""
    from ..evaluation.metrics import best_threshold

    xs = (x - np.asarray(base.mean)) / np.asarray(base.scale)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    weights, biases, logits = [], [], []
    for _ in range(n):
        take = np.concatenate([np.asarray([rng.choice(pos) for _ in pos]),
                               np.asarray([rng.choice(neg) for _ in neg])])
        w = fit_logistic(xs[take], y[take], l2=l2)
        probs = 1.0 / (1.0 + np.exp(-np.clip(w[0] + xs[take] @ w[1:], -50, 50)))
        t, _ = best_threshold(probs[y[take] == 1].tolist(), probs[y[take] == 0].tolist(), **targets)
        t = min(max(t, 1e-6), 1 - 1e-6)
        weights.append(w[1:])
        biases.append(w[0])
        logits.append(np.log(t / (1 - t)))
    threshold = float(1.0 / (1.0 + np.exp(-np.mean(logits))))
    return GateModel(list(base.features), base.mean, base.scale, np.mean(weights, axis=0).tolist(),
                     float(np.mean(biases)), threshold)


def _rates_at(threshold: float, pos: np.ndarray, neg: np.ndarray, st: dict[str, Any]) -> dict[str, Any]:
    """``st`` (a :func:`best_threshold` result) moved to ``threshold``: its rates there, and whether the
    targets it was chosen for hold."""
    from ..evaluation.metrics import gate_stats

    pt = gate_stats(threshold, pos.tolist(), neg.tolist())
    met = pt["unknown_recall"] >= st["target_unknown_recall"] - 1e-12 and (
        st["max_false_unknown"] is None or 1 - pt["answer_recall"] <= st["max_false_unknown"] + 1e-12)
    return {**pt, "targets_met": met}


def fit_options(cfg: Any, k: int) -> dict[str, Any]:
    """The :func:`fit_gate` keyword arguments of a ``[gate]`` config (``GateConfig``) and the query's ``k``:
    what ``KnowledgeBase.calibrate_gate`` and ``kb tune`` fit with."""
    return {"n_probes": cfg.probes, "k": k, "seed": cfg.seed, "features": cfg.features,
            "target_unknown_recall": cfg.target_unknown_recall, "max_false_unknown": cfg.max_false_unknown,
            "bootstrap": cfg.bootstrap}


def fit_gate(search_fn: SearchFn, docstore: Any, stats: Any, *, n_probes: int = 200, k: int = 5,
             seed: int = 0, features: Sequence[str] = FEATURES, target_unknown_recall: float = 0.8,
             max_false_unknown: float = 0.1, l2: float = 1.0, min_probes: int = 20,
             probes: Sequence[Probe] | None = None, bootstrap: int = 0,
             ) -> tuple[dict[str, GateModel], dict[str, Any]]:
    """Fit one gate model per language of the knowledge base on its own probes (languages with fewer
    than ``min_probes`` answerable probes are left out); returns the models and a report. ``bootstrap``
    > 1: the model and its threshold are the average over that many resamples of the probes (weights
    averaged, thresholds averaged in log-odds), which steadies a threshold that otherwise rests on the
    few lowest-scored answerable probes."""
    from ..errors import KBError
    from ..evaluation.metrics import best_threshold

    t0 = time.perf_counter()
    probes = list(probes) if probes is not None else make_probes(docstore, stats, n_probes, seed)
    rows = [gate_features(p.question, search_fn(p.question, k), stats) for p in probes]
    models: dict[str, GateModel] = {}
    report: dict[str, Any] = {"chunks": int(len(docstore.chunk_ids())), "languages": {}}
    for lang in sorted({p.lang for p in probes}):
        idx = [i for i, p in enumerate(probes) if p.lang == lang]
        y = np.asarray([1.0 if probes[i].answerable else 0.0 for i in idx])
        if y.sum() < min_probes or (1 - y).sum() < min_probes // 2:
            report["languages"][lang] = {"skipped": f"{int(y.sum())} answerable probes (< {min_probes})"}
            continue
        x = feature_matrix([rows[i] for i in idx], features)
        targets = {"target_unknown_recall": target_unknown_recall, "max_false_unknown": max_false_unknown}
        model = GateModel.fit(x, y, features, l2=l2)
        if bootstrap > 1:
            model = _bagged(model, x, y, l2, bootstrap, random.Random(seed), targets)
        probs = np.asarray([model.probability(rows[i]) for i in idx])
        threshold, st = best_threshold(probs[y == 1].tolist(), probs[y == 0].tolist(), **targets)
        if bootstrap > 1:  # the averaged threshold; the rates reported at it
            threshold = model.threshold
            st = {**st, **_rates_at(threshold, probs[y == 1], probs[y == 0], st)}
        model.threshold = float(threshold)
        kinds: dict[str, int] = {}
        for i in idx:
            kinds[probes[i].kind] = kinds.get(probes[i].kind, 0) + 1
        model.info = {"probes": kinds, "probe_unknown_recall": round(st["unknown_recall"], 4),
                      "probe_false_unknown": round(1 - st["answer_recall"], 4),
                      "targets_met": st["targets_met"]}
        models[lang] = model
        report["languages"][lang] = model.info
    if not models:
        raise KBError("cannot fit the unknown gate: the knowledge base gave too few probe questions "
                      f"(ingest more text; {report['languages']})")
    report.update(fitted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seed=seed,
                  docstore_version=int(docstore.version), seconds=round(time.perf_counter() - t0, 1))
    logger.info("unknown gate fitted: %s", report["languages"])
    return models, report
