"""kb-assistant as a LlamaIndex retriever, exercised through LlamaIndex's own retrieve() API."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from kb_assistant import KnowledgeBase  # noqa: E402
from kb_assistant.integrations.llama_index import as_llama_index_retriever  # noqa: E402


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("li")
    (root / "docs").mkdir()
    (root / "docs" / "vpn.txt").write_text("To set up the VPN, install the WireGuard client and import "
                                           "the profile you received from IT.")
    (root / "docs" / "fstab.txt").write_text("Mount points are listed in /etc/fstab.")
    (root / "secret").mkdir()
    (root / "secret" / "pay.txt").write_text("Salary bands for the VPN team are confidential.")
    kb = KnowledgeBase(root / "kb")
    kb.ingest(root / "docs")
    kb.ingest(root / "secret", groups=["hr"])
    yield kb
    kb.close()


def test_retrieve_returns_nodes_with_scores(kb):
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle

    retriever = as_llama_index_retriever(kb, k=2)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve("how do I set up the VPN?")
    assert 1 <= len(nodes) <= 2 and all(isinstance(n, NodeWithScore) for n in nodes)
    top = nodes[0]
    assert top.node.metadata["source"].endswith("vpn.txt")
    assert top.node.metadata["chunk_id"] == top.node.node_id
    assert "page" in top.node.metadata and 0.0 <= top.score <= 1.0
    assert "WireGuard" in top.node.get_content()
    assert retriever.retrieve(QueryBundle("fstab mount points"))[0].node.metadata["source"].endswith(
        "fstab.txt")


def test_groups_respected_and_async(kb):
    import asyncio

    public = as_llama_index_retriever(kb, k=5, groups=[])
    assert not [n for n in public.retrieve("salary bands VPN team") if "pay.txt" in n.node.metadata["source"]]
    hr = as_llama_index_retriever(kb, k=5, groups=["hr"])
    nodes = asyncio.run(hr.aretrieve("salary bands VPN team"))
    assert nodes[0].node.metadata["source"].endswith("pay.txt")


def test_global_settings_untouched(kb):
    from llama_index.core import Settings

    before = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    as_llama_index_retriever(kb, k=1).retrieve("vpn")
    assert (Settings._llm, Settings._embed_model, Settings._callback_manager) == before
