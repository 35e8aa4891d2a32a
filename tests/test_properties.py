"""Property-based tests (hypothesis, #16 item 9): the chunker, the CJK clean-up and the JSONL/QA readers.

The number of examples is small by default (CI); ``KB_FUZZ_EXAMPLES=2000 pytest tests/test_properties.py``
runs a longer campaign.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kb_assistant.errors import ConfigError  # noqa: E402
from kb_assistant.text import sentence_spans  # noqa: E402
from kb_assistant.types import Document  # noqa: E402

EXAMPLES = int(os.environ.get("KB_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("KB_FUZZ_EXAMPLES"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: text as documents have it: Latin and CJK words, every sentence end the splitters know, line breaks,
#: odd spaces, and now and then a long run without any of them
ALPHABET = st.sampled_from(list("abcdefghij XYZ0123456789.,;:!?-_/\n\t\u3000")
                           + list("年假报销单网络配置。，；！？")
                           + ["\u00a0", "“", "”", "(", ")", "[1]", "e.g. ", "http://x.example/a.b"])
TEXTS = st.lists(st.one_of(ALPHABET, st.text(min_size=1, max_size=3),
                           st.sampled_from(["word " * 80, "字" * 300, "x" * 2000])),
                 max_size=120).map("".join)


@functools.cache
def _chunker(tokens: int = 64, overlap: int = 0, minimum: int = 0, headings: bool = False):
    from kb_assistant.chunking import Chunker
    from kb_assistant.config import ChunkingConfig
    from kb_assistant.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    cfg = ChunkingConfig(chunk_tokens=tokens, overlap_tokens=overlap, min_chunk_tokens=minimum,
                         embed_headings=headings)
    return Chunker(cfg, emb.count_tokens, emb.max_tokens)


def _solid(text: str) -> Counter:
    return Counter(ch for ch in text if not ch.isspace())


# ---------------------------------------------------------------- the chunker
@SETTINGS
@given(TEXTS)
def test_sentence_spans_cover_the_text(text):
    spans = sentence_spans(text)
    assert all(s < e for s, e in spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(not text[s].isspace() and not text[e - 1].isspace() for s, e in spans)
    assert _solid("".join(text[s:e] for s, e in spans)) == _solid(text)


@SETTINGS
@given(st.lists(TEXTS, min_size=1, max_size=3), st.sampled_from([32, 64, 256]))
def test_chunks_fit_the_budget_and_lose_nothing(texts, tokens):
    docs = [Document(t, {"page": i + 1, "heading": "Heading"}) for i, t in enumerate(texts)]
    chunker = _chunker(tokens)
    chunks = chunker.chunk(docs, "doc")
    assert all(c.n_tokens <= chunker.limit for c in chunks)
    assert all(len(c.text) <= chunker.max_unit_chars for c in chunks)
    # no overlap and no minimum: every non-space character is in exactly one chunk, on its own page
    for i, text in enumerate(texts):
        page = [c for c in chunks if c.metadata.get("page") == i + 1]
        assert _solid("".join(c.text for c in page)) == _solid(text)


@SETTINGS
@given(TEXTS)
def test_chunk_ids_are_deterministic(text):
    a = _chunker(64, 16, 8, True).chunk([Document(text, {"title": "T"})], "d")
    b = _chunker(64, 16, 8, True).chunk([Document(text, {"title": "T"})], "d")
    assert [(c.chunk_id, c.n_tokens) for c in a] == [(c.chunk_id, c.n_tokens) for c in b]


# ---------------------------------------------------------------- the CJK clean-up
CJK_TEXTS = st.lists(st.one_of(st.sampled_from(list("员工每年享有十五天带薪年假。，、“”（）《》：；！？ \n")),
                               st.sampled_from(["VPN ", "1194", " port", "对 于 一 个 支 持", "\n\n"]),
                               st.text(alphabet="abc 中文字。\n", max_size=5)), max_size=200).map("".join)


@SETTINGS
@given(CJK_TEXTS, st.one_of(st.none(), st.integers(0, 120)))
def test_cjk_cleanup_never_drops_a_character(text, width):
    from kb_assistant.loaders.cleanup import normalize_cjk

    assert _solid(normalize_cjk(text, width)) == _solid(text)


@SETTINGS
@given(CJK_TEXTS, st.integers(0, 120))
def test_cjk_cleanup_is_idempotent(text, width):
    from kb_assistant.loaders.cleanup import normalize_cjk

    once = normalize_cjk(text, width)
    assert normalize_cjk(once, width) == once


# ---------------------------------------------------------------- the JSONL / QA readers
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=5),
                           max_leaves=20)
QA_KEYS = ["id", "question", "lang", "kind", "answerable", "source", "evidence", "page", "split", "answer",
           "answer_keywords", "absent_terms"]
QA_RECORDS = st.dictionaries(st.sampled_from(QA_KEYS), JSON_VALUES | st.sampled_from(
    ["en", "zh", "unanswerable", "tune", "test", "a.pdf", True, False, 1, "What is it?"]), max_size=10)
LINES = st.lists(st.one_of(QA_RECORDS.map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=40),
                           st.sampled_from(["[" * 5000, "1" * 5000, "{", "\x00", '{"id": "\\ud800"}'])),
                 max_size=8)


@SETTINGS
@given(LINES)
def test_the_qa_reader_raises_only_config_errors(tmp_path_factory, lines):
    from kb_assistant.evaluation.qa import load_qa

    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        items = load_qa(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert items


@SETTINGS
@given(st.binary(max_size=300))
def test_the_jsonl_readers_take_any_bytes(tmp_path_factory, data):
    from kb_assistant.evaluation.qa import load_qa
    from kb_assistant.finetune.examples import load_examples

    path = tmp_path_factory.mktemp("raw") / "data.jsonl"
    path.write_bytes(data)
    for read in (load_qa, load_examples):
        try:
            read(path)
        except ConfigError:
            pass
