"""Approximate dense index (IVF above a lowered threshold): recall, tombstones, compaction, filters
before the cut, background build and swap, persistence, and a rebuild killed mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from kb_assistant.errors import ConfigError
from kb_assistant.store import ann
from kb_assistant.store.vector import DenseIndex, DenseIndexConfig

DIM = 32
ROOT = Path(__file__).resolve().parent.parent


def _data(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit vectors (like replicated chunks), ids with gaps, and queries near the clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 30, DIM)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centres[rng.integers(0, len(centres), 40)] + 0.3 * rng.normal(size=(40, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.arange(n, dtype=np.int64) * 3 + 1, x, q


def _cfg(**kw: object) -> DenseIndexConfig:
    return DenseIndexConfig(**{"ann_threshold": 1000, "background": False, **kw})  # type: ignore[arg-type]


def _exact(ids: np.ndarray, x: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None = None) -> list:
    if keep is not None:
        ids, x = ids[keep], x[keep]
    return [set(ids[np.argsort(-(x @ v))[:k]].tolist()) for v in q]


def _ivf(tmp_path: Path, **kw: object) -> tuple[DenseIndex, np.ndarray, np.ndarray, np.ndarray]:
    ids, x, q = _data()
    idx = DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=False, config=_cfg(**kw))
    idx.add(ids, x)
    assert idx.kind == "ivf" and idx.ntotal == len(ids)
    return idx, ids, x, q


def test_recall_against_exact_and_sidecar(tmp_path):
    idx, ids, x, q = _ivf(tmp_path)
    want = _exact(ids, x, q, 10)
    _, got = idx.search(q, 10)
    recall = np.mean([len(set(g.tolist()) & w) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95
    one = [idx.search(v, 10)[1][0].tolist() for v in q]  # single queries take the same path
    assert one == got.tolist()
    idx.save()
    side = json.loads((tmp_path / "d.faiss.json").read_text())
    assert side["kind"] == "ivf" and side["storage"] == "fp16" and side["nprobe"] == 32
    assert side["nlist"] == idx.index.nlist == 256 and side["trained_on"] == len(ids)
    assert side == {**idx.describe(), "saved_at": side["saved_at"]}
    again = DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=False, config=_cfg())
    assert again.kind == "ivf" and np.array_equal(again.ids(), ids)
    assert again.search(q, 10)[1].tolist() == got.tolist()
    assert np.allclose(again.vectors(ids[:5]), x[:5], atol=1e-3)  # float16 codes, one copy


def test_tombstones_never_returned_then_compacted(tmp_path):
    idx, ids, x, q = _ivf(tmp_path, compact_share=0.1)
    gone = ids[::20]  # 5%: tombstones, still in the lists
    idx.remove(gone)
    assert idx.describe()["tombstones"] == len(gone) and idx.index.ntotal == len(ids)
    assert idx.ntotal == len(ids) - len(gone) and not np.isin(gone, idx.ids()).any()
    _, got = idx.search(q, 50)
    assert not np.isin(got, gone).any() and (got >= 0).all()
    _, got = idx.search(x[:20], 1)  # a deleted vector's own query does not find it
    assert not np.isin(got, gone).any()
    more = ids[1::20][:400]  # past 10%: compacted (removed from the lists)
    idx.remove(more)
    assert idx.describe()["tombstones"] == 0 and idx.index.ntotal == len(ids) - len(gone) - len(more)
    assert not np.isin(idx.search(q, 50)[1], np.concatenate([gone, more])).any()
    idx.add(gone[:1], x[2:3])  # a re-added id comes back with its new vector
    assert sorted(idx.search(x[2], 2)[1][0].tolist()) == [gone[0], ids[2]]
    idx.remove(gone[1:3])
    idx.save()  # saving compacts: the file holds no deleted vector
    saved = DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=False, config=_cfg())
    assert saved.index.ntotal == saved.ntotal == idx.ntotal and not np.isin(gone[1:3], saved.ids()).any()


def test_filters_before_the_cut_any_selectivity(tmp_path):
    idx, ids, x, q = _ivf(tmp_path)
    idx.remove(ids[:30])
    keep = np.zeros(len(ids), bool)
    keep[30:][::3] = True  # a third, like the ACL group in the benchmark
    allowed = ids[keep]
    want = _exact(ids, x, q, 10, keep)
    _, got = idx.search(q, 10, allowed=allowed)
    assert np.isin(got, allowed).all()
    assert np.mean([len(set(g.tolist()) & w) / 10 for g, w in zip(got, want, strict=True)]) >= 0.95
    for n_allowed in (12, 60):  # very selective: every list scanned, k hits since k exist
        few = np.random.default_rng(n_allowed).choice(ids[30:], n_allowed, replace=False)
        few = np.concatenate([few, ids[:5], [10**7]])  # deleted and unknown ids do not count
        scores, got = idx.search(q, 10, allowed=few)
        assert got.shape == (len(q), 10) and np.isin(got, few[:n_allowed]).all()
        assert [set(g.tolist()) for g in got] == _exact(ids, x, q, 10, np.isin(ids, few[:n_allowed]))
    _, got = idx.search(q[0], 10, allowed=ids[40:43])
    assert sorted(got[0].tolist()) == sorted(ids[40:43].tolist())  # fewer than k allowed: only those
    assert idx.search(q[0], 10, allowed=ids[:5])[1].tolist() == [[-1]]  # only deleted ones: nothing
    # a filter of 5% is not "very selective": nprobe grows by 1/share, k hits still come back
    share = ids[30::20]
    _, got = idx.search(q, 10, allowed=share)
    assert (got >= 0).all() and np.isin(got, share).all()


def test_background_build_swaps_in_with_changes_replayed(tmp_path, monkeypatch):
    ids, x, q = _data()
    idx = DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=False,
                     config=_cfg(ann_threshold=5000, background=True, retrain_growth=1.15))
    idx.add(ids[:4000], x[:4000])
    idx.save()
    started, release = threading.Event(), threading.Event()
    real = ann.new_ivf

    def slow_train(*a, **kw):
        started.set()
        assert release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(ann, "new_ivf", slow_train)
    idx.add(ids[4000:5000], x[4000:5000])  # reaches the threshold: the build starts
    assert started.wait(30) and idx.building and idx.kind == "flat"
    idx.add(ids[5000:5500], x[5000:5500])  # meanwhile: adds, removes, a re-add with a new vector
    idx.remove(ids[:100])
    idx.add(ids[:1], x[7:8])
    _, got = idx.search(x[5001], 1)  # the exact index serves during the build
    assert got[0, 0] == ids[5001]
    release.set()
    assert idx.wait_for_build(30) and not idx.building and idx.kind == "ivf"
    live = np.concatenate([ids[:1], ids[100:5500]])
    assert np.array_equal(idx.ids(), np.sort(live)) and idx.index.ntotal == len(live)
    assert np.allclose(idx.vectors(ids[:1]), x[7:8], atol=1e-3)
    assert idx.describe()["trained_on"] == 5000
    assert idx.dirty and DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=False).kind == "flat"
    idx.add(ids[5500:], x[5500:])  # grown 1.15x since training: retrains in the background
    assert idx.wait_for_build(30) and idx.describe()["trained_on"] == len(ids) - 99


def test_reconcile_builds_ivf_from_the_docstore_vectors(tmp_path):
    ids, x, _ = _data()
    by_id = dict(zip(ids.tolist(), x, strict=True))
    calls: list[int] = []

    def fetch(part: np.ndarray) -> np.ndarray:
        calls.append(len(part))
        return np.stack([by_id[int(i)] for i in part])

    idx = DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=False, config=_cfg())
    assert idx.reconcile(ids, fetch) == (len(ids), 0) and idx.kind == "ivf"
    assert sum(calls) == len(ids) + len(ids)  # every vector once, plus the k-means sample
    assert idx.reconcile(np.concatenate([ids[10:], [10**6]]),
                         lambda part: np.ones((len(part), DIM), np.float32) / DIM**0.5) == (1, 10)
    assert idx.ntotal == len(ids) - 9 and 10**6 in set(idx.ids().tolist())


def test_config_is_validated():
    with pytest.raises(ConfigError, match="storage must be one of 'fp16', 'sq8'"):
        DenseIndexConfig(storage="pq")
    with pytest.raises(ConfigError, match="nprobe"):
        DenseIndexConfig(nprobe=0)
    assert DenseIndexConfig().nlist_for(1_000_000) == 4096 and DenseIndexConfig().nlist_for(100) == 32


_KILLED = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from kb_assistant.store import ann
    from kb_assistant.store.vector import DenseIndex, DenseIndexConfig
    path, where = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    idx = DenseIndex(path, 16, use_gpu=False, config=DenseIndexConfig(ann_threshold=2000, background=False))
    faiss = ann.faiss_module()
    def die_writing(index, name):  # part of a file, then killed
        open(name, "wb").write(b"IwFl" + bytes(4000))
        os.kill(os.getpid(), signal.SIGKILL)
    def die_filling(index, batches):
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "write":
        faiss.write_index = die_writing
    else:
        ann.fill = die_filling
    idx.add(np.arange(3000, dtype=np.int64), x)  # past the threshold: IVF build, then save
    idx.save()
""")


@pytest.mark.parametrize("where", ["build", "write"])
def test_rebuild_killed_midway_leaves_the_old_index(tmp_path, where):
    path = tmp_path / "d.faiss"
    old = DenseIndex(path, 16, use_gpu=False)
    rng = np.random.default_rng(1)
    old.add(np.arange(500, dtype=np.int64) + 10_000, rng.normal(size=(500, 16)).astype(np.float32))
    old.save()
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(path), where], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before  # the killed rebuild never touched the serving file
    again = DenseIndex(path, 16, use_gpu=False)
    assert again.kind == "flat" and np.array_equal(again.ids(), np.arange(500) + 10_000)
    assert json.loads((tmp_path / "d.faiss.json").read_text())["kind"] == "flat"


def test_knowledge_base_on_the_ivf_path(tmp_path, monkeypatch):
    """Ingest, ACL search and delete through the real KnowledgeBase with the threshold lowered in its
    config.toml ([dense])."""
    from kb_assistant import KnowledgeBase

    docs, hr = tmp_path / "docs", tmp_path / "hr"
    docs.mkdir()
    hr.mkdir()
    for i in range(24):
        (hr if i % 3 == 0 else docs).joinpath(f"n{i}.txt").write_text(
            f"Note {i}: the build server number {i} runs job {i * 7} every night on rack {i % 5}.")
    (docs / "vpn.txt").write_text("The VPN server listens on port 1194 and uses OpenVPN.")
    kb = KnowledgeBase(tmp_path / "kb", config={"dense": {"ann_threshold": 20, "background": False}})
    kb.ingest([hr], groups=["hr"], show_progress=False)
    kb.ingest([docs], show_progress=False)
    assert kb.dense.kind == "ivf" and kb.dense.ntotal == 25
    assert kb.search("which port does the VPN listen on", k=1)[0].text.startswith("The VPN")
    hits = kb.search("build server job rack", k=10, groups=[])
    assert len(hits) == 10 and not any("/hr/" in h.source for h in hits)
    assert len(kb.search("build server job rack", k=10, groups=["hr"])) == 10
    kb.delete("vpn.txt")
    assert all("VPN" not in h.text for h in kb.search("VPN port", k=5))
    assert kb.verify()["ok"]
    kb.close()
    again = KnowledgeBase(tmp_path / "kb")
    assert again.dense.kind == "ivf" and again.dense.ntotal == 24
    again.close()


@pytest.mark.gpu
@pytest.mark.skipif(not ann.gpu_available(), reason="no faiss-gpu and CUDA GPU here")
def test_ivf_on_gpu(tmp_path):  # pragma: no cover - GPU only
    ids, x, q = _data()
    idx = DenseIndex(tmp_path / "d.faiss", DIM, use_gpu=True, config=_cfg())
    idx.add(ids, x)
    cpu = DenseIndex(tmp_path / "c.faiss", DIM, use_gpu=False, config=_cfg())
    cpu.add(ids, x)
    _, got = idx.search(q, 10)
    _, want = cpu.search(q, 10)
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), want.tolist(), strict=True)]
    assert np.mean(overlap) > 0.9
