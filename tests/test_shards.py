"""ShardedKnowledgeBase: two tiny knowledge bases searched as one, top k merged by score, ACL per shard."""

from __future__ import annotations

import pytest

from kb_assistant import KnowledgeBase, ShardedKnowledgeBase
from kb_assistant.errors import KBError

A = {"vpn.txt": "To set up the VPN, install the client and import the office profile.",
     "printer.txt": "The printer on floor two needs a badge; scan to email from its panel.",
     "holidays.txt": "Holidays: 25 days a year, booked in the HR portal two weeks ahead."}
B = {"wifi.txt": "The guest wifi password changes every Monday and is shown at reception.",
     "expenses.txt": "Expenses are filed within 30 days with a photo of the receipt.",
     "salary.txt": "Salary bands for 2026 and the bonus payout table are confidential."}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    paths = []
    for name, files in (("a", A), ("b", B)):
        src = root / f"src-{name}"
        src.mkdir()
        for fname, text in files.items():
            (src / fname).write_text(text)
        with KnowledgeBase(root / name) as kb:
            for fname in files:
                kb.ingest(src / fname, groups=["hr"] if fname == "salary.txt" else None)
        paths.append(root / name)
    return paths


def _names(hits):
    return [h.source.rsplit("/", 1)[-1] for h in hits]


def test_merged_top_k_is_the_union_cut_by_score(shards):
    with ShardedKnowledgeBase(shards) as skb:
        for query, want in (("how do I set up the VPN client", "vpn.txt"),
                            ("guest wifi password", "wifi.txt")):
            hits = skb.search(query, k=3)
            assert len(hits) == 3 and _names(hits)[0] == want
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            per = [kb.search(query, k=3) for kb in skb.shards]
            union = sorted((h for p in per for h in p), key=lambda h: -h.score)[:3]
            assert [h.chunk_id for h in hits] == [h.chunk_id for h in union]
            assert {h.metadata["shard"] for h in hits} <= {0, 1}
        assert len({h.metadata["shard"] for h in skb.search("office", k=6)}) == 2


def test_acl_applies_on_every_shard(shards):
    with ShardedKnowledgeBase(shards) as skb:
        assert "salary.txt" not in _names(skb.search("salary bands bonus payout", k=6, groups=["eng"]))
        assert _names(skb.search("salary bands bonus payout", k=1, groups=["hr"])) == ["salary.txt"]
        assert skb.search("anything", k=0) == []
        assert skb.stats()["shards"] == 2 and skb.stats()["chunks"] == 6


def test_query_embedded_once_for_all_shards(shards, monkeypatch):
    with ShardedKnowledgeBase(shards) as skb:
        inner = skb.shards[0].retriever.embedder._inner
        calls = []
        for name in ("embed_query", "embed_query_parts"):  # the latter with a cross-lingual embedder
            if hasattr(inner, name):
                real = getattr(inner, name)
                monkeypatch.setattr(inner, name, lambda t, real=real: calls.append(t) or real(t))
        skb.search("expenses receipt photo", k=2)
        assert calls == ["expenses receipt photo"]


def test_shard_routing_is_stable_and_errors(shards, tmp_path):
    with ShardedKnowledgeBase(shards) as skb:
        picks = {skb.shard_for(f"doc{i}") for i in range(50)}
        assert picks == {0, 1} and skb.shard_for("doc7") == skb.shard_for("doc7")
    with pytest.raises(KBError, match="at least one"):
        ShardedKnowledgeBase([])
    with pytest.raises(KBError):
        ShardedKnowledgeBase([tmp_path / "not-a-kb"])
