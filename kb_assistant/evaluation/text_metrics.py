"""Text metrics of answers, in one place: keyword hit, ROUGE-L, BLEU, faithfulness, "unknown" detection.

Used by the answer evaluation (:mod:`kb_assistant.evaluation.answers_eval`), the fine-tuning
before/after table (:mod:`kb_assistant.finetune.evaluate`) and the benchmarks.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from ..evidence import support_score
from ..prompts import UNKNOWN_TEXT
from ..text import CITATION_RE, detect_lang

_UNKNOWN_RE = re.compile(r"\b(i don'?t know|i do not know|has no information|no information about|"
                         r"cannot answer)\b|没有找到|不知道|无法回答", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+(?:[._:/-][a-z0-9]+)*")

def tokens(text: str) -> list[str]:
    """Words for Latin text, single characters for CJK (lowercased, citations removed)."""
    return _TOKEN_RE.findall(CITATION_RE.sub(" ", text or "").lower())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 from the longest common subsequence of the two token lists."""
    a, b = tokens(prediction), tokens(reference)
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def _own_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    matches, totals = [0] * 4, [0] * 4
    pred_len = ref_len = 0
    for pred, ref in zip(predictions, references, strict=True):
        p, r = tokens(pred), tokens(ref)
        pred_len, ref_len = pred_len + len(p), ref_len + len(r)
        for n in range(1, 5):
            pc = Counter(tuple(p[i:i + n]) for i in range(len(p) - n + 1))
            rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in pc.items())
            totals[n - 1] += max(len(p) - n + 1, 0)
    if pred_len == 0:
        return 0.0
    log_p = sum(math.log((m + 1) / (t + 1)) for m, t in zip(matches, totals, strict=True)) / 4
    bp = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / max(pred_len, 1))
    return 100.0 * bp * math.exp(log_p)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU (0-100) and which implementation computed it."""
    if not predictions:
        return 0.0, "none"
    try:
        import sacrebleu
    except ImportError:
        return round(_own_bleu(predictions, references), 2), "kb_assistant BLEU-4 (add-one)"
    zh = any(detect_lang(r) == "zh" for r in references)
    preds = [CITATION_RE.sub("", p) for p in predictions]
    score = sacrebleu.corpus_bleu(preds, [list(references)], tokenize="zh" if zh else "13a")
    return round(float(score.score), 2), f"sacrebleu {sacrebleu.__version__}"


def is_unknown(text: str) -> bool:
    """The answer declines (the unknown template, or a plainly equivalent phrase)."""
    t = text.strip()
    return not t or any(u[:20] in t for u in UNKNOWN_TEXT.values()) or bool(_UNKNOWN_RE.search(t))


def keyword_hit(text: str, keywords: Sequence[str]) -> float:
    """Share of ``keywords`` found in ``text`` (case and whitespace ignored); 0 without keywords."""
    if not keywords:
        return 0.0
    low = " ".join(text.lower().split())
    return sum(1 for k in keywords if " ".join(k.lower().split()) in low) / len(keywords)


def faithfulness(text: str, passages: Sequence[str]) -> float:
    cited = [passages[int(n) - 1] for n in CITATION_RE.findall(text) if 1 <= int(n) <= len(passages)]
    return support_score(text, cited or list(passages))
