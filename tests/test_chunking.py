import pytest

from kb_assistant.chunking import Chunker, make_chunk_id
from kb_assistant.config import ChunkingConfig
from kb_assistant.embedding import SentenceTransformerEmbedder
from kb_assistant.text import detect_lang, sentence_spans
from kb_assistant.types import Document


@pytest.fixture(scope="module")
def emb():
    return SentenceTransformerEmbedder()


def _chunker(emb, **kw):
    return Chunker(ChunkingConfig(**kw), emb.count_tokens, emb.max_tokens)


def test_split_sentences_english_and_chinese():
    text = "First one. Second one! 第一句。第二句！第三句？第四句；end"
    parts = [text[s:e] for s, e in sentence_spans(text)]
    assert parts == ["First one.", "Second one!", "第一句。", "第二句！", "第三句？", "第四句；", "end"]


def test_never_cuts_inside_a_sentence_unless_needed(emb):
    sentences = [f"这是第{i}个测试句子，内容关于网络配置和打印机设置。" for i in range(40)]
    doc = Document("".join(sentences), {"page": 3, "heading": "网络"})
    chunks = _chunker(emb, chunk_tokens=64, overlap_tokens=0).chunk([doc], "d1")
    assert len(chunks) > 3
    for ch in chunks:
        assert ch.text.endswith("。"), ch.text
        assert ch.n_tokens <= 64
        assert ch.metadata["page"] == 3 and ch.metadata["heading"] == "网络"
        assert ch.metadata["lang"] == "zh"
    joined = "".join(ch.text for ch in chunks)
    assert joined == doc.text  # no overlap: chunks tile the text exactly


def test_overlap_and_long_sentence(emb):
    long_sentence = " ".join(["word"] * 400) + "."
    doc = Document("Short intro. " * 30 + long_sentence)
    chunks = _chunker(emb, chunk_tokens=64, overlap_tokens=16).chunk([doc], "d")
    counts = emb.count_tokens([c.embed_text for c in chunks])
    assert max(counts) <= 64  # nothing is silently truncated by the model
    assert any(c.text.startswith("Short intro.") for c in chunks[1:])  # overlap carried whole sentences


def test_chunks_do_not_span_pages_and_ids_are_deterministic(emb):
    docs = [Document("Alpha text here. " * 5, {"page": 1}), Document("Beta text here. " * 5, {"page": 2})]
    a = _chunker(emb).chunk(docs, "doc")
    b = _chunker(emb).chunk(docs, "doc")
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert {c.metadata["page"] for c in a} == {1, 2}
    assert all(("Alpha" in c.text) != ("Beta" in c.text) for c in a)
    assert make_chunk_id("doc", 0, "x") != make_chunk_id("doc", 1, "x")


def test_heading_is_embedded_not_stored(emb):
    doc = Document("The VPN uses port 1194.", {"heading": "VPN setup", "title": "IT Handbook"})
    (chunk,) = _chunker(emb).chunk([doc], "d")
    assert chunk.text == "The VPN uses port 1194."
    assert chunk.embed_text.startswith("IT Handbook > VPN setup\n")


def test_lang():
    assert detect_lang("年假为每年十五天") == "zh"
    assert detect_lang("annual leave is 25 days") == "en"
