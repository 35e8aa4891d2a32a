"""Shared test set-up: offline model hub, capped threads in parallel workers, small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two torch processes on two cores slow each other many-fold: one thread per worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def encode_batch_sizes(monkeypatch):
    """spy(embedder) -> list: the batch size of each ``encode`` call its model gets from then on."""

    def spy(emb) -> list[int]:
        calls: list[int] = []
        real = emb.model.encode

        def encode(texts, batch_size, **kw):
            calls.append(batch_size)
            return real(texts, batch_size=batch_size, **kw)

        monkeypatch.setattr(emb.model, "encode", encode)
        return calls

    return spy


@pytest.fixture
def write():
    """write(path, text, encoding='utf-8') -> Path, creating parent folders."""

    def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode(encoding))
        return path

    return _write


@pytest.fixture
def kb_factory(tmp_path):
    """Open knowledge bases under tmp_path; closed at teardown."""
    from kb_assistant import KnowledgeBase

    opened = []

    def _open(name: str = "kb", config=None):
        kb = KnowledgeBase(tmp_path / name, config)
        opened.append(kb)
        return kb

    yield _open
    for kb in opened:
        try:
            kb.close()
        except Exception:
            pass


@pytest.fixture
def docstore(tmp_path):
    """A fresh DocStore in tmp_path; closed at teardown."""
    from kb_assistant.store.docstore import DocStore

    store = DocStore(tmp_path / "docstore.sqlite")
    yield store
    store.close()


def _unit_vector(text: str, dim: int):
    import hashlib

    import numpy as np

    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def unit_vector():
    """unit_vector(text, dim) -> a deterministic random unit vector (same text, same vector)."""
    return _unit_vector


@pytest.fixture
def add_doc():
    """add_doc(store, path, texts, *, dim=8, groups=(), tags=(), metas=None, **record fields) ->
    (DocumentRecord, added row ids): one document with one chunk per text, ids and vectors derived
    from the path and the text as ingest derives them (no embedder)."""
    import hashlib

    import numpy as np

    from kb_assistant.chunking import make_chunk_id, make_doc_id
    from kb_assistant.store.docstore import DocumentRecord
    from kb_assistant.types import Chunk

    def _add(store, path, texts, *, dim=8, groups=(), tags=(), metas=None, **fields):
        doc_id = fields.pop("doc_id", make_doc_id(path))
        record = DocumentRecord(doc_id, path, fields.pop("content_hash", f"h-{path}"),
                                fields.pop("mtime", 1.0e9), fields.pop("size", 10),
                                groups=list(groups), tags=list(tags), **fields)
        metas = metas or [{"lang": "en"} for _ in texts]
        chunks = [Chunk(make_chunk_id(doc_id, i, t), doc_id, i, t, dict(m), n_tokens=len(t.split()))
                  for i, (t, m) in enumerate(zip(texts, metas, strict=True))]
        vectors = np.stack([_unit_vector(t, dim) for t in texts]) if texts else np.zeros((0, dim))
        hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts]
        _, added = store.replace_document(record, chunks, vectors, hashes)
        return record, added

    return _add
