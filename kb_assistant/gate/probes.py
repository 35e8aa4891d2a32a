"""Probe questions a knowledge base generates about itself, to fit its own unknown gate without
labelled data.

* **answerable** — a template question made from a sentence of a sampled chunk (the question
  templates of :mod:`kb_assistant.finetune.templates`); the chunk is its evidence;
* **off-topic** — everyday enterprise questions from a shipped bilingual bank
  (``kb_assistant/data/offtopic_questions.txt``), kept only when the knowledge base lacks some of their
  terms (a bank question the documents can answer is never used as a negative);
* **swapped** — an answerable probe whose most specific term is replaced by a product name the
  knowledge base never mentions: in-domain wording about an absent subject, the hard negatives that
  real unanswerable questions are;
* **reworded** — an answerable probe with one ordinary word replaced by a word the documents never
  use (taken from the bank), as users ask in their own words: still answerable.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from ..analysis import analyze
from ..text import detect_lang, split_sentences

#: product and service names used to make in-domain questions about absent subjects
ABSENT_NAMES = {
    "en": ("Kubernetes", "Salesforce", "Tableau", "Workday", "Jira", "Confluence", "SharePoint", "Zendesk",
           "HubSpot", "Snowflake", "Terraform", "Okta", "Figma", "Webex", "QuickBooks", "NetSuite",
           "ServiceNow", "Splunk", "Datadog", "Trello", "Asana", "Notion", "Dynamics 365", "Mailchimp",
           "Shopify", "Stripe", "Twilio", "Marketo", "Airtable", "Smartsheet"),
    "zh": ("钉钉", "飞书", "企业微信", "用友", "金蝶", "泛微", "致远", "石墨文档", "腾讯会议", "印象笔记",
           "有道云笔记", "禅道", "明道云", "纷享销客", "北森", "薪人薪事", "易快报", "汇联易", "销售易",
           "简道云"),
}


@dataclass
class Probe:
    question: str
    answerable: bool
    kind: str  # "answerable" | "reworded" | "offtopic" | "swapped"
    lang: str
    chunk_id: str = ""


def offtopic_bank() -> list[str]:
    """The shipped off-topic questions (English and Chinese)."""
    text = resources.files("kb_assistant").joinpath("data/offtopic_questions.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _absent_share(question: str, stats: Any) -> float:
    terms = list(dict.fromkeys(analyze(question)))
    if not terms:
        return 0.0
    return sum(1 for t in terms if stats.vocab.get(t) is None
               or stats.doc_freq(stats.vocab[t]) == 0) / len(terms)


def _template_question(sentence: str, heading: str, lang: str) -> str | None:
    from ..finetune.templates import questions_for

    qs = questions_for(sentence, heading, lang)
    return qs[0][0] if qs else None


def answerable_probes(rows: list[Any], n: int, rng: random.Random) -> list[Probe]:
    """Up to ``n`` template questions from the sentences of ``rows`` (chunk rows, in random order)."""
    out: list[Probe] = []
    for row in rows:
        if len(out) >= n:
            break
        heading = str(row.metadata.get("heading") or row.metadata.get("title") or "")
        sentences = [s for s in split_sentences(row.text) if 25 <= len(s) <= 260]
        rng.shuffle(sentences)
        for sentence in sentences[:3]:
            lang = detect_lang(sentence)
            question = _template_question(" ".join(sentence.split()), heading, lang)
            if question:
                out.append(Probe(question, True, "answerable", lang, row.chunk_id))
                break
    return out


def offtopic_probes(stats: Any, langs: set[str], min_absent: float = 0.2) -> list[Probe]:
    """Bank questions in ``langs`` whose terms the knowledge base partly lacks."""
    out = []
    for q in offtopic_bank():
        lang = detect_lang(q)
        if lang in langs and _absent_share(q, stats) >= min_absent:
            out.append(Probe(q, False, "offtopic", lang))
    return out


_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]{2,}")


def swapped_probes(probes: list[Probe], stats: Any, rng: random.Random) -> list[Probe]:
    """Each answerable probe with its rarest known term replaced by an absent product name."""
    names = {lang: [nm for nm in pool if _absent_share(nm, stats) == 1.0]
             for lang, pool in ABSENT_NAMES.items()}
    out = []
    for p in probes:
        pool = names.get(p.lang) or names["en"]
        if not pool:
            continue
        if p.lang == "zh":
            from ..text import jieba

            words = [w for w in jieba().lcut(p.question) if len(w) >= 2 and re.search(r"[\u4e00-\u9fff]", w)]
        else:
            words = _WORD_RE.findall(p.question)
        known = [(w, _rarity(w, stats)) for w in words]
        known = [(w, r) for w, r in known if r > 0]
        if not known:
            continue
        target = max(known, key=lambda wr: wr[1])[0]
        question = p.question.replace(target, rng.choice(pool), 1)
        out.append(Probe(question, False, "swapped", p.lang))
    return out


def _rarity(word: str, stats: Any) -> float:
    """Mean idf of the word's known terms (0 when none is known)."""
    ids = [stats.vocab[t] for t in analyze(word) if t in stats.vocab and stats.doc_freq(stats.vocab[t]) > 0]
    return float(np.mean(stats.idf(np.asarray(ids)))) if ids else 0.0


def _bank_words(stats: Any, lang: str) -> list[str]:
    """Ordinary words of the bank's questions in ``lang`` that the knowledge base never uses."""
    from .features import name_terms

    out: set[str] = set()
    for q in offtopic_bank():
        if detect_lang(q) != lang:
            continue
        names = set(name_terms(q, stats))
        for t in analyze(q):
            if t not in names and len(t) >= (2 if lang == "zh" else 4) and t.isalpha() and \
                    (stats.vocab.get(t) is None or stats.doc_freq(stats.vocab[t]) == 0):
                out.add(t)
    return sorted(out)


def reworded_probes(probes: list[Probe], stats: Any, rng: random.Random, share: float = 0.5) -> list[Probe]:
    """``share`` of the answerable probes, each with one ordinary word swapped for an unused one."""
    from ..text import ANSWER_STOPWORDS_EN

    pools = {lang: _bank_words(stats, lang) for lang in ("en", "zh")}
    out = []
    for p in probes:
        pool = pools.get(p.lang) or []
        if not pool or rng.random() >= share:
            continue
        if p.lang == "zh":
            from ..text import jieba

            words = [w for w in jieba().lcut(p.question)
                     if len(w) >= 2 and re.fullmatch(r"[\u4e00-\u9fff]+", w)]
        else:
            words = [w for w in re.findall(r"\b[a-z]{4,}\b", p.question) if w not in ANSWER_STOPWORDS_EN]
        if not words:
            continue
        target = rng.choice(words)
        question = p.question.replace(target, rng.choice(pool), 1)
        out.append(Probe(question, True, "reworded", p.lang, p.chunk_id))
    return out
