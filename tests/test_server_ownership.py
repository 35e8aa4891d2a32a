"""Uploads belong to the groups that uploaded them (#16 item 2): real keys, real HTTP, real files.

The issue's cases: HR uploads ``plan.txt`` and the public key uploads its own ``plan.txt`` (used to
answer 201 "updated" and make HR's document public); IT uploads a binary ``budget.txt`` with the name
of HR's file (used to answer 422 and delete HR's file from ``uploads/``).
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
httpx = pytest.importorskip("httpx")

from server_helpers import build_tiny_kb  # noqa: E402

from kb_assistant.server import create_app, running_server  # noqa: E402
from kb_assistant.server.uploads import owner_folder  # noqa: E402

HR, IT, PUBLIC, HR2, BOTH = ("hr-key-0123456789", "it-key-0123456789", "pub-key-0123456789",
                             "hr2-key-0123456789", "both-key-0123456789")
KEYS = {HR: ["hr"], IT: ["it"], PUBLIC: [], HR2: ["hr"], BOTH: ["hr", "it"]}
HR_PLAN = b"HR plan: the reorganisation of the payroll team is announced in May.\n"
PUBLIC_PLAN = b"Public plan: the summer picnic is on the 21st of June.\n"
BINARY = bytes(range(256)) * 40


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("owners"))
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def url(kb):
    with running_server(create_app(kb, api_keys=KEYS, max_upload_bytes=64 * 1024)) as base:
        yield base


def upload(url: str, key: str, name: str, data: bytes, **form: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/documents", files={"files": (name, data)}, data=form or None,
                      headers={"X-API-Key": key}, timeout=120)


def docs_named(kb, name: str) -> list[dict]:
    return [d for d in kb.documents() if d["path"].endswith("/" + name)]


def search(url: str, key: str, query: str) -> list[dict]:
    r = httpx.post(f"{url}/v1/search", json={"query": query, "k": 10}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def test_owner_folders_are_distinct_per_group_set():
    assert owner_folder([]) == "_public"
    assert owner_folder(["hr"]) == "hr" and owner_folder(["it", "hr", "hr"]) == "hr+it"
    odd = owner_folder(["a/b"])
    assert odd.startswith("g-") and odd != owner_folder(["a_b"]) and "/" not in odd
    assert owner_folder(["_public"]).startswith("g-")  # cannot collide with the public folder


def test_same_name_from_another_group_coexists_and_changes_nothing(url, kb):
    r = upload(url, HR, "plan.txt", HR_PLAN)
    assert r.status_code == 201, r.text
    assert r.json()["paths"] == ["uploads/hr/plan.txt"] and r.json()["groups"] == ["hr"]
    r = upload(url, PUBLIC, "plan.txt", PUBLIC_PLAN)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["report"]["updated"] == [] and body["report"]["added"] == ["uploads/_public/plan.txt"]
    plans = {d["path"].rsplit("/", 2)[-2]: d for d in docs_named(kb, "plan.txt")}
    assert set(plans) == {"hr", "_public"}
    assert plans["hr"]["groups"] == ["hr"] and plans["_public"]["groups"] == []
    assert (kb.path / "uploads" / "hr" / "plan.txt").read_bytes() == HR_PLAN
    assert (kb.path / "uploads" / "_public" / "plan.txt").read_bytes() == PUBLIC_PLAN
    # HR's text is still HR's and still hidden from the public key
    public_hits = search(url, PUBLIC, "reorganisation of the payroll team")
    assert not any("payroll" in h["text"] for h in public_hits)
    hr_hits = search(url, HR, "reorganisation of the payroll team")
    assert hr_hits[0]["source"] == "uploads/hr/plan.txt" and "payroll" in hr_hits[0]["text"]


def test_a_failed_upload_never_removes_or_changes_a_file(url, kb):
    r = upload(url, HR, "budget.txt", b"HR budget 2025: 1.2 million euros for training.\n")
    assert r.status_code == 201, r.text
    hr_file = kb.path / "uploads" / "hr" / "budget.txt"
    before = (hr_file.read_bytes(), docs_named(kb, "budget.txt"))
    # IT: a binary file under HR's name lands in IT's folder and fails there
    r = upload(url, IT, "budget.txt", BINARY)
    assert r.status_code == 422 and "binary" in r.json()["error"]["message"]
    assert "/tmp" not in r.text and str(kb.path) not in r.text  # no server paths in the reason
    assert not (kb.path / "uploads" / "it" / "budget.txt").exists()
    # HR itself: a corrupt replacement, and one beyond the size limit, keep the old version
    r = upload(url, HR, "budget.txt", BINARY)
    assert r.status_code == 422
    r = upload(url, HR, "budget.txt", b"x" * (65 * 1024))
    assert r.status_code == 413 and "max_upload_mb" in r.json()["error"]["message"]
    assert (hr_file.read_bytes(), docs_named(kb, "budget.txt")) == before
    hits = search(url, HR, "HR budget 2025 training")
    assert hits[0]["source"] == "uploads/hr/budget.txt" and "1.2 million" in hits[0]["text"]
    staging = kb.path / "uploads" / ".staging"
    assert not staging.exists() or not list(staging.iterdir())


def test_a_mixed_upload_keeps_the_good_file_and_restores_the_bad_one(url, kb):
    r = upload(url, HR, "notes.txt", b"HR notes: the intranet moves to the new portal in July.\n")
    assert r.status_code == 201
    original = (kb.path / "uploads" / "hr" / "notes.txt").read_bytes()
    files = [("files", ("notes.txt", BINARY)),
             ("files", ("agenda.txt", b"HR agenda: the works council meets on Mondays.\n"))]
    r = httpx.post(f"{url}/v1/documents", files=files, headers={"X-API-Key": HR}, timeout=120)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["stored"] == ["agenda.txt"] and body["report"]["failed"][0]["path"] == "uploads/hr/notes.txt"
    assert (kb.path / "uploads" / "hr" / "notes.txt").read_bytes() == original


def test_only_the_owner_group_may_replace_regroup_or_delete(url, kb):
    r = upload(url, HR, "policy.txt", b"HR policy: remote work is allowed two days a week.\n")
    assert r.status_code == 201
    doc = docs_named(kb, "policy.txt")[0]

    def delete(key: str) -> httpx.Response:
        return httpx.delete(f"{url}/v1/documents/{doc['doc_id']}", headers={"X-API-Key": key}, timeout=60)

    assert delete(IT).status_code == 404  # IT cannot even see it
    denied = delete(BOTH)  # reads it (shares "hr"), but did not upload it: 403
    assert denied.status_code == 403 and "belongs to the group(s) that uploaded it" in denied.text
    listed = httpx.get(f"{url}/v1/documents", headers={"X-API-Key": BOTH}).json()["documents"]
    assert next(d for d in listed if d["doc_id"] == doc["doc_id"])["deletable"] is False
    # the same name from BOTH is its own document in its own folder: HR's groups do not change
    r = upload(url, BOTH, "policy.txt", b"Joint policy: the offices close at 8 pm.\n", groups="it")
    assert r.status_code == 201 and r.json()["paths"] == ["uploads/hr+it/policy.txt"]
    assert next(d for d in docs_named(kb, "policy.txt") if d["doc_id"] == doc["doc_id"])["groups"] == ["hr"]
    # another key of the same group is the same owner: it may re-group (re-upload) and delete
    r = upload(url, HR2, "policy.txt", b"HR policy: remote work is allowed two days a week.\n")
    assert r.status_code == 201 and r.json()["report"]["unchanged"] == ["uploads/hr/policy.txt"]
    assert delete(HR2).status_code == 200
    assert not (kb.path / "uploads" / "hr" / "policy.txt").exists()


def test_keys_cannot_delete_what_was_not_uploaded_through_the_api(url, kb):
    vpn = next(d for d in kb.documents() if d["path"].endswith("vpn.md"))  # public, ingested by the CLI
    r = httpx.delete(f"{url}/v1/documents/{vpn['doc_id']}", headers={"X-API-Key": PUBLIC}, timeout=60)
    assert r.status_code == 403 and "not uploaded through the API" in r.json()["error"]["message"]
    assert any(d["doc_id"] == vpn["doc_id"] for d in kb.documents())
