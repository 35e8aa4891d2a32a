"""Access control is applied before the cut to k: forbidden text never comes back, k readable hits do."""

from __future__ import annotations

import pytest

from kb_assistant import KnowledgeBase

SECRET = "The Zanzibar merger codename is BLUEHERON and the payout table lists quarterly bonus amounts."


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("acl")
    hr, pub = root / "hr", root / "pub"
    hr.mkdir()
    pub.mkdir()
    (hr / "secret.txt").write_text(SECRET)
    topics = ["sales staff", "engineers", "managers", "interns", "the support team", "contractors"]
    for i, who in enumerate(topics):  # many forbidden chunks that match "quarterly bonus policy" best
        (hr / f"bonus{i}.txt").write_text(f"Quarterly bonus policy for {who}: the quarterly bonus of {who} "
                                          f"is paid after the quarterly review (bonus policy rule {i * 7}).")
    for i in range(3):
        (pub / f"handbook{i}.txt").write_text(f"Employee handbook chapter {i}: holidays, the bonus policy "
                                              "overview and office hours.")
    (pub / "vpn.txt").write_text("To set up the VPN, install the client and import the profile.")
    kb = KnowledgeBase(root / "kb")
    kb.ingest(hr, groups=["hr"])
    kb.ingest(pub)
    yield kb
    kb.close()


def _sources(hits):
    return [h.source.rsplit("/", 1)[-1] for h in hits]


@pytest.mark.parametrize("groups", [[], ["eng"], ["sales", "eng"]])
def test_forbidden_text_never_returned(kb, groups):
    for query in ["BLUEHERON", "Zanzibar merger codename", "quarterly bonus payout table"]:
        hits = kb.search(query, k=10, groups=groups)
        assert not [h for h in hits if "hr/" in h.source], (query, _sources(hits))
        assert all("BLUEHERON" not in h.text for h in hits)


def test_query_matching_only_forbidden_text_returns_nothing_of_it(kb):
    hits = kb.search("BLUEHERON", k=3, groups=["eng"])
    assert "secret.txt" not in _sources(hits)
    sparse_only = KnowledgeBase(kb.path, {"retrieval": {"mode": "sparse"}})
    assert sparse_only.search("BLUEHERON", k=3, groups=["eng"]) == []
    assert _sources(sparse_only.search("BLUEHERON", k=3, groups=["hr"])) == ["secret.txt"]


def test_k_readable_hits_when_top_ranked_are_forbidden(kb):
    unrestricted = kb.search("quarterly bonus policy", k=4)
    assert all("hr/" in h.source for h in unrestricted)  # the forbidden ones rank first
    hits = kb.search("quarterly bonus policy", k=4, groups=[])
    assert len(hits) == 4 and not [h for h in hits if "hr/" in h.source]


def test_group_member_reads_and_trusted_caller(kb):
    assert "secret.txt" in _sources(kb.search("BLUEHERON codename", k=3, groups=["hr"]))
    assert "secret.txt" in _sources(kb.search("BLUEHERON codename", k=3, groups=None))


def test_relabel_takes_effect(kb, tmp_path):
    (tmp_path / "memo.txt").write_text("The PELICAN project memo is restricted.")
    kb.ingest(tmp_path / "memo.txt", groups=["legal"])
    assert "memo.txt" not in _sources(kb.search("PELICAN project memo", k=3, groups=["eng"]))
    kb.ingest(tmp_path / "memo.txt", groups=["eng"])  # same content, new groups
    assert "memo.txt" in _sources(kb.search("PELICAN project memo", k=3, groups=["eng"]))
    kb.ingest(tmp_path / "memo.txt", groups=["legal"])
    assert "memo.txt" not in _sources(kb.search("PELICAN project memo", k=3, groups=["eng"]))
