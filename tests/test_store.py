"""Dense index: the single-query scans (BLAS, float16 pre-scan) return exactly what FAISS returns."""

from __future__ import annotations

import numpy as np
import pytest

from kb_assistant.store import ann_flat
from kb_assistant.store.vector import DenseIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("half_min", [10**9, 1000])  # plain BLAS scan, float16 pre-scan
def test_single_query_scan_is_exact(tmp_path, monkeypatch, half_min):
    monkeypatch.setattr(ann_flat, "HALF_SCAN_MIN", half_min)
    rng = np.random.default_rng(0)
    idx = DenseIndex(tmp_path / "d.faiss", 32, use_gpu=False)
    base = _unit(rng, 3000, 32)
    # near-duplicates make float16 ties likely: the exact re-scoring must still order them right
    vecs = np.concatenate([base, base[:200] + 1e-4 * _unit(rng, 200, 32)])
    ids = np.arange(len(vecs), dtype=np.int64) * 7 + 1
    idx.add(ids, vecs)
    deleted = set(range(1, 700, 7))
    idx.remove(np.array(sorted(deleted), np.int64))  # deleted ids never come back
    by_id = dict(zip(ids.tolist(), vecs, strict=True))
    for q in _unit(rng, 25, 32):
        for k in (1, 10, 50):
            got_s, got_i = idx.search(q, k)
            want_s, want_i = idx.index.search(q[None], k)
            # same scores rank by rank (ids may swap only between exact/near ties)
            assert np.allclose(got_s, want_s, atol=1e-5)
            assert len(set(got_i[0].tolist())) == k and not deleted & set(got_i[0].tolist())
            assert np.allclose([by_id[i] @ q for i in got_i[0].tolist()], got_s[0], atol=1e-5)
            # ranks whose score is clearly apart from its neighbours hold the very same id
            w = want_s[0]
            gaps = np.diff(w)
            apart = np.ones(len(w), bool)
            apart[:-1] &= np.abs(gaps) > 1e-5
            apart[1:] &= np.abs(gaps) > 1e-5
            assert (got_i[0][apart] == want_i[0][apart]).all()
    assert (idx._backend._half is not None) == (half_min == 1000)
    idx.add(np.array([10**6], np.int64), base[150:151])  # a change drops the float16 copy
    assert idx._backend._half is None
    assert set(idx.search(base[150], 3)[1][0].tolist()) == {150 * 7 + 1, 3150 * 7 + 1, 10**6}


@pytest.mark.parametrize("half_min", [10**9, 1000])
def test_allowed_ids_filter_before_the_cut(tmp_path, monkeypatch, half_min):
    monkeypatch.setattr(ann_flat, "HALF_SCAN_MIN", half_min)
    rng = np.random.default_rng(1)
    idx = DenseIndex(tmp_path / "d.faiss", 16, use_gpu=False)
    vecs = _unit(rng, 4000, 16)
    idx.add(np.arange(4000, dtype=np.int64), vecs)
    allowed = np.arange(0, 4000, 13, dtype=np.int64)
    for q in _unit(rng, 10, 16):
        scores, ids = idx.search(q, 8, allowed=allowed)
        want = allowed[np.argsort(-(vecs[allowed] @ q))[:8]]
        assert list(ids[0]) == list(want)  # k readable hits, the best of the readable ones
    _, ids = idx.search(vecs[0], 50, allowed=np.array([3, 5], np.int64))
    assert sorted(ids[0].tolist()) == [3, 5]  # fewer allowed than k: only those
    _, ids = idx.search(vecs[0], 5, allowed=np.zeros(0, np.int64))
    assert ids[0].tolist() == [-1]
