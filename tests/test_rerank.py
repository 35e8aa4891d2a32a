"""Cross-encoder reranking stage: re-orders the fused top-N by the model's scores; off when unconfigured."""

from __future__ import annotations

import numpy as np
import pytest

from kb_assistant import KnowledgeBase
from kb_assistant.embedding import default_sentence_transformer_path

TEXTS = [f"Note {i}: the backup server keeps {i} snapshots of the mail spool and rotates them nightly."
         for i in range(6)] + ["The printer on floor two needs new toner.", "Backups run at midnight."]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A randomly initialised 2-layer BERT cross-encoder (hidden 32) with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("ce")
    tok = AutoTokenizer.from_pretrained(str(default_sentence_transformer_path()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("rr")
    for i, text in enumerate(TEXTS):
        (root / "docs").mkdir(exist_ok=True)
        (root / "docs" / f"t{i}.txt").write_text(text)
    kb = KnowledgeBase(root / "kb")
    kb.ingest(root / "docs")
    yield kb
    kb.close()


def test_off_when_unconfigured(kb):
    assert kb.retriever.reranker is None
    assert all("rerank_score" not in h.metadata for h in kb.search("backup snapshots", k=5))


def test_order_follows_model_scores(kb, tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    query = "how many snapshots does the backup server keep"
    plain = kb.search(query, k=6)
    reranked_kb = KnowledgeBase(kb.path, {"retrieval": {"reranker_path": str(tiny_cross_encoder),
                                                        "rerank_top": 6, "candidates": 6,
                                                        "dedup_threshold": 1.0}})
    reranked = reranked_kb.search(query, k=6)
    assert {h.chunk_id for h in reranked} == {h.chunk_id for h in plain[:6]} or len(reranked) == 6
    model = CrossEncoder(str(tiny_cross_encoder), local_files_only=True)
    expected = np.asarray(model.predict([(query, h.text) for h in reranked]), dtype=np.float32).reshape(-1)
    got = [h.metadata["rerank_score"] for h in reranked]
    assert got == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-5)
    assert got == sorted(got, reverse=True)
    assert [h.chunk_id for h in reranked] != [h.chunk_id for h in plain] or len(set(got)) == 1
    assert all(0.0 <= h.score <= 1.0 for h in reranked)


def test_missing_model_is_a_clear_error(kb, tmp_path):
    from kb_assistant.errors import ModelNotFound

    broken = KnowledgeBase(kb.path, {"retrieval": {"reranker_path": str(tmp_path / "nope")}})
    with pytest.raises(ModelNotFound, match="reranker"):
        broken.search("backup", k=3)
