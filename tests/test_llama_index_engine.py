"""LlamaIndex query engine + CustomLLM over a knowledge base, run end to end in LlamaIndex pipelines.

The generator tests run the real SmolLM2 on CPU (seconds per call): they are marked slow.
"""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="the llamaindex extra is not installed")

from llama_index.core import Settings  # noqa: E402
from llama_index.core.base.response.schema import Response  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402
from server_helpers import UNKNOWN_QUESTION, build_tiny_kb  # noqa: E402

from kb_assistant.errors import ConfigError  # noqa: E402
from kb_assistant.integrations.llama_index_engine import (  # noqa: E402
    KBLLM,
    KBQueryEngine,
    as_llama_index_query_engine,
    hit_to_node,
)
from kb_assistant.types import Hit  # noqa: E402

VPN_QUESTION = "What is the address and port of the company VPN server?"


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("li"))
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def llm():
    return KBLLM(num_output=24)


def test_hit_to_node_keeps_source_and_page():
    node = hit_to_node(Hit("text here", 0.8, "/data/handbook.pdf", 3, "chunk-1"))
    assert node.node.node_id == "chunk-1" and node.score == pytest.approx(0.8)
    assert node.node.metadata == {"source": "/data/handbook.pdf", "file": "handbook.pdf", "page": 3}
    assert "page" not in node.node.get_content(metadata_mode="llm")


def test_query_engine_unknown_answer_without_generator(kb):
    engine = as_llama_index_query_engine(kb, k=3)
    assert isinstance(engine, KBQueryEngine)
    response = engine.query(UNKNOWN_QUESTION)
    assert isinstance(response, Response)
    assert response.metadata["unknown"] is True and response.metadata["mode"] == "unknown"
    assert response.response
    assert Settings._llm is None  # LlamaIndex's global LLM was never resolved (no OpenAI fallback)


def test_query_engine_extractive_answer_has_source_nodes(kb):
    engine = as_llama_index_query_engine(kb, answer_mode="extractive")
    response = engine.query(VPN_QUESTION)
    assert response.metadata["unknown"] is False
    assert "1194" in response.response
    assert response.source_nodes[0].node.metadata["file"] == "vpn.md"
    cited = set(response.metadata["citations"].values())
    assert cited <= {n.node.node_id for n in response.source_nodes}


def test_groups_restrict_what_the_engine_reads(kb):
    question = "Which months are salary bands reviewed?"
    hr = as_llama_index_query_engine(kb, groups=["hr"], answer_mode="extractive").query(question)
    eng = as_llama_index_query_engine(kb, groups=["eng"], answer_mode="extractive").query(question)
    assert any(n.node.metadata["file"] == "salary_bands.md" for n in hr.source_nodes)
    assert not any(n.node.metadata["file"] == "salary_bands.md" for n in eng.source_nodes)


def test_bad_options(kb):
    with pytest.raises(ConfigError, match="synthesizer must be one of"):
        as_llama_index_query_engine(kb, synthesizer="magic")
    with pytest.raises(ConfigError, match="streaming needs"):
        as_llama_index_query_engine(kb, streaming=True)
    with pytest.raises(ConfigError, match="apply to synthesizer='kb' only"):
        as_llama_index_query_engine(kb, synthesizer="llama_index", answer_mode="extractive")


@pytest.mark.slow
def test_custom_llm_complete_stream_and_chat(llm):
    assert llm.metadata.is_chat_model and llm.metadata.num_output == 24
    text = llm.complete("Name one primary colour.", max_new_tokens=8).text
    assert text.strip()
    pieces = list(llm.stream_complete("Say hello.", max_new_tokens=8))
    assert pieces and pieces[-1].text == "".join(p.delta for p in pieces)
    reply = llm.chat([ChatMessage(role="system", content="Answer briefly."),
                      ChatMessage(role="user", content="Name a fruit.")], max_new_tokens=8)
    assert reply.message.content.strip()


@pytest.mark.slow
def test_llama_index_pipeline_retriever_plus_custom_llm(kb, llm):
    """LlamaIndex's RetrieverQueryEngine: the kb retriever adapter feeds its synthesizer, KBLLM answers."""
    engine = as_llama_index_query_engine(kb, k=2, synthesizer="llama_index", llm=llm)
    response = engine.query(VPN_QUESTION)
    assert str(response).strip()
    files = [n.node.metadata.get("file") or n.node.metadata.get("source", "") for n in response.source_nodes]
    assert any("vpn.md" in f for f in files)
    assert Settings._llm is None


@pytest.mark.slow
def test_llama_index_pipeline_streaming(kb, llm):
    engine = as_llama_index_query_engine(kb, k=1, synthesizer="llama_index", llm=llm, streaming=True)
    streaming = engine.query(VPN_QUESTION)
    text = "".join(streaming.response_gen)
    assert text.strip()
    assert streaming.source_nodes


@pytest.mark.slow
def test_kb_query_engine_generated_answer(kb):
    response = as_llama_index_query_engine(kb).query(VPN_QUESTION)
    assert response.metadata["unknown"] is False
    assert "1194" in response.response or "vpn.acme.example" in response.response
    assert response.source_nodes
