"""CUDA path: fp16 embeddings and faiss-gpu search. Skipped where no GPU is present."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]


def test_fp16_embeddings_on_cuda_match_cpu():
    from kb_assistant.embedding import SentenceTransformerEmbedder

    texts = ["The VPN server listens on port 1194.", "Annual leave is 25 days."]
    gpu = SentenceTransformerEmbedder(device="cuda", fp16=True)
    cpu = SentenceTransformerEmbedder(device="cpu")
    a, b = gpu.embed_documents(texts), cpu.embed_documents(texts)
    assert next(gpu.model.parameters()).dtype == torch.float16
    assert np.allclose(a, b, atol=2e-2)


def test_gpu_batch_size_is_used_on_cuda(encode_batch_sizes):
    from kb_assistant.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(device="cuda", fp16=True, batch_size=8, gpu_batch_size=256)
    calls = encode_batch_sizes(emb)
    emb.embed_documents(["The VPN server listens on port 1194."] * 3)
    assert calls == [256]


def test_kb_search_on_gpu(tmp_path):
    from kb_assistant import KnowledgeBase

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The VPN server listens on port 1194.")
    kb = KnowledgeBase(tmp_path / "kb", {"embedding": {"device": "cuda"}})
    kb.ingest(tmp_path / "docs")
    assert kb.search("vpn port", k=1)[0].text.startswith("The VPN")
