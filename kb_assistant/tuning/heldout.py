"""What ``kb tune`` keeps out of training: a deterministic share of the chunks, and the probe questions
made from them.

* :func:`hold_out` — the chunks with the lowest sha256 of ``"<seed>:<chunk text>"``: the same chunks on
  every run with the same seed, and mostly the same ones after an ingest adds a few files;
* :func:`eval_probes` — per held-out chunk, template questions over its sentences (the templates of
  :mod:`kb_assistant.finetune.templates`, as the gate's probes use them) whose **keywords** are the terms
  of the source sentence that the question does not hold: the span a cloze or number question asks for,
  the predicate of a definition; and as many unanswerable probes (:mod:`kb_assistant.gate.probes`:
  off-topic bank questions and answerable probes with their subject swapped for an absent one);
* :class:`TrainingChunks` — the docstore without the held-out chunks, for refitting the unknown gate on
  probes that never come from them.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import KBError
from ..finetune.templates import questions_for
from ..gate.probes import Probe, offtopic_probes, swapped_probes
from ..text import detect_lang, split_sentences, terms

#: sentence lengths a probe is made from (as the gate's answerable probes and the training data use)
MIN_SENTENCE, MAX_SENTENCE = 25, 260
#: what a cloze / number template question puts in place of its answer span
_ASKED_RE = re.compile(r"\b(?:which|how many)(?: [a-z]+)?|多少\S?", re.IGNORECASE)


@dataclass
class EvalProbe:
    """One held-out probe. ``keywords``: what a right answer holds (empty for unanswerable probes)."""

    question: str
    answerable: bool
    kind: str  # a template name ("cloze", "number", ...) or "offtopic" / "swapped"
    lang: str
    keywords: list[str] = field(default_factory=list)
    sentence: str = ""
    chunk_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def hold_out(docstore: Any, share: float, seed: int = 0, minimum: int = 4) -> dict[int, Any]:
    """The held-out chunk rows (row id -> chunk row): ``share`` of the chunks, at least ``minimum``, at
    most half of them, chosen by hash of the chunk's text (not its id: ids hash the file's absolute path,
    and the same knowledge base in another folder must hold out the same chunks)."""
    ids = [int(i) for i in docstore.chunk_ids()]
    if len(ids) < 2:
        raise KBError("the knowledge base is too small to tune (ingest files first)")
    rows = docstore.get_chunks(ids)
    n = min(max(round(share * len(ids)), minimum), len(ids) // 2)
    chosen = sorted(rows, key=lambda i: (_rank(seed, rows[i].text), rows[i].chunk_id))[:n]
    return {i: rows[i] for i in sorted(chosen)}


def _asked_span(question: str, sentence: str) -> str:
    """The part of ``sentence`` a cloze or number question replaced by "which ..." / "how many ..." (the
    text between the question's words before and after it); "" when the question is not of that form."""
    m = _ASKED_RE.search(question)
    if not m:
        return ""
    low = sentence.lower()
    left, right = question[: m.start()].strip().lower(), question[m.end():].strip(" ?").lower()
    start = low.find(left) + len(left) if left and low.find(left) >= 0 else 0
    end = low.rfind(right) if right and low.rfind(right) >= start else len(sentence)
    return sentence[start:end]


def probe_keywords(question: str, sentence: str, lang: str, n: int = 2) -> list[str]:
    """What a right answer holds: the ``n`` longest terms of ``sentence`` that ``question`` lacks, taken
    from the span a cloze or number question asks for when it has one (numbers count: they are what a
    "how many" question asks for), in sentence order."""
    asked = set(terms(question))
    for text in (_asked_span(question, sentence), sentence):
        new = [t for t in dict.fromkeys(terms(text)) if t not in asked and (lang != "zh" or len(t) >= 2)]
        if new:
            keep = set(sorted(new, key=lambda t: (-len(t), t))[:n])
            return [t for t in new if t in keep]
    return []


def answerable_eval_probes(rows: list[Any], n: int, per_chunk: int, rng: random.Random) -> list[EvalProbe]:
    """Up to ``n`` template questions, at most ``per_chunk`` from one chunk: sentences with a specific
    template (cloze, number, definition...) first, the keyword fallback after; each with a keyword."""
    out: list[EvalProbe] = []
    for row in rows:
        if len(out) >= n:
            break
        heading = str(row.metadata.get("heading") or row.metadata.get("title") or "")
        found: list[EvalProbe] = []
        for sentence in (" ".join(s.split()) for s in split_sentences(row.text)):
            if not MIN_SENTENCE <= len(sentence) <= MAX_SENTENCE:
                continue
            lang = detect_lang(sentence)
            qs = questions_for(sentence, heading, lang)
            keywords = probe_keywords(qs[0][0], sentence, lang) if qs else []
            if keywords:
                found.append(EvalProbe(qs[0][0], True, qs[0][1], lang, keywords, sentence, row.chunk_id))
        rng.shuffle(found)
        found.sort(key=lambda p: p.kind == "keywords")  # stable: specific templates first
        out += found[: min(per_chunk, n - len(out))]
    return out


def eval_probes(held_out: dict[int, Any], stats: Any, n: int, per_chunk: int = 3,
                seed: int = 0) -> list[EvalProbe]:
    """Answerable probes from the held-out chunks, then about as many unanswerable ones (half off-topic
    bank questions in the knowledge base's languages, half swapped subjects)."""
    rng = random.Random(seed)
    rows = sorted(held_out.values(), key=lambda r: (r.text, r.chunk_id))  # not row order: ingest order varies
    rng.shuffle(rows)
    pos = answerable_eval_probes(rows, n, per_chunk, rng)
    if not pos:
        raise KBError("no probe question could be made from the held-out chunks (too little running text "
                      "to tune on; ingest more documents)")
    as_probes = [Probe(p.question, True, "answerable", p.lang, p.chunk_id) for p in pos]
    swapped = swapped_probes(as_probes, stats, rng)
    off = offtopic_probes(stats, {p.lang for p in pos})
    rng.shuffle(swapped)
    rng.shuffle(off)
    n_neg = len(pos)
    take_swapped = swapped[: n_neg // 2]
    negatives = take_swapped + off[: n_neg - len(take_swapped)]
    return pos + [EvalProbe(p.question, False, p.kind, p.lang) for p in negatives]


class TrainingChunks:
    """A read-only view of a docstore without the held-out rows: what the gate's probe maker reads
    (``catalog_rows``, ``chunk_ids``); every other attribute is the docstore's own."""

    def __init__(self, docstore: Any, held_out_rows: set[int]) -> None:
        self._docstore = docstore
        self._held_out = held_out_rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._docstore, name)

    def _keep(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray([int(i) not in self._held_out for i in ids.tolist()], dtype=bool)

    def chunk_ids(self) -> np.ndarray:
        ids = self._docstore.chunk_ids()
        return ids[self._keep(ids)]

    def catalog_rows(self) -> tuple[np.ndarray, list[str], list[str | None]]:
        ids, docs, langs = self._docstore.catalog_rows()
        keep = self._keep(ids)
        return ids[keep], [d for d, k in zip(docs, keep, strict=True) if k], \
            [g for g, k in zip(langs, keep, strict=True) if k]
