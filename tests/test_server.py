"""REST server: real uvicorn on 127.0.0.1 (free port, background thread), real HTTP with httpx.

Fast tests use a tiny knowledge base and questions the unknown gate refuses (no generator call); the
answer tests that run the real generator on the sample knowledge base are marked slow.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
httpx = pytest.importorskip("httpx")

from server_helpers import KEYS, UNKNOWN_QUESTION, BlockingGenerator, build_tiny_kb  # noqa: E402

from kb_assistant.errors import ConfigError  # noqa: E402
from kb_assistant.server import check_bind, create_app, running_server  # noqa: E402
from kb_assistant.server.common import history_query  # noqa: E402
from kb_assistant.server.gate import GenerationGate, QueueFull  # noqa: E402
from kb_assistant.server.uploads import safe_filename  # noqa: E402


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("server"))
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def url(tiny_kb):
    with running_server(create_app(tiny_kb, max_upload_bytes=4096)) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_url(tiny_kb):
    with running_server(create_app(tiny_kb, api_keys=KEYS)) as base:
        yield base


VPN_QUESTION = "What is the address and port of the company VPN server?"


def sse_events(response) -> list[tuple[str, dict]]:
    events, event = [], "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            events.append((event, json.loads(line[5:])))
            event = "message"
    return events


def files_of(hits: list[dict]) -> set[str]:
    return {h["file"] for h in hits}


# ------------------------------------------------------------------ basics
def test_healthz_and_index_page(url):
    r = httpx.get(f"{url}/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["auth"] is False
    assert body["queue"]["running"] == 0
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="question"' in page.text
    assert httpx.get(f"{url}/static/app.js").status_code == 200


def test_search_returns_hits_with_file_and_page(url):
    r = httpx.post(f"{url}/v1/search", json={"query": "VPN server port", "k": 3})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and hits[0]["file"] == "vpn.md"
    assert {"text", "score", "source", "page", "chunk_id"} <= set(hits[0])


def test_search_validation_errors(url):
    assert httpx.post(f"{url}/v1/search", json={"query": ""}).status_code == 422
    assert httpx.post(f"{url}/v1/search", json={"query": "x", "k": 0}).status_code == 422
    r = httpx.post(f"{url}/v1/search", json={"query": "vpn", "filters": {"colour": "red"}})
    assert r.status_code == 400 and "colour" in r.json()["error"]["message"]


def test_ask_unknown_question_json_and_stream(url):
    r = httpx.post(f"{url}/v1/ask", json={"question": UNKNOWN_QUESTION}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown"] is True and body["mode"] == "unknown" and body["text"]
    with httpx.stream("POST", f"{url}/v1/ask", json={"question": UNKNOWN_QUESTION, "stream": True},
                      timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "delta" in kinds
    done = events[-1][1]
    assert done["unknown"] is True and "timings" in done and "sources" in done
    assert "".join(d["text"] for e, d in events if e == "delta") == done["text"]


# ------------------------------------------------------------------ access control
def test_api_keys_map_to_acl_groups(keyed_url):
    def search(key, query, **extra):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{keyed_url}/v1/search", json={"query": query, "k": 5, **extra}, headers=headers)

    assert search(None, "salary bands").status_code == 401
    assert search("wrong-key-0123456789", "salary bands").status_code == 401
    hr = search("hr-key-0123456789", "salary bands April committee")
    eng = search("eng-key-0123456789", "salary bands April committee")
    assert hr.status_code == eng.status_code == 200
    assert "salary_bands.md" in files_of(hr.json()["hits"])
    assert "salary_bands.md" not in files_of(eng.json()["hits"])
    assert "deployments.md" not in files_of(hr.json()["hits"])
    # a key may narrow its groups, never widen them
    assert search("hr-key-0123456789", "deployments", groups=["eng"]).status_code == 403
    narrowed = search("all-key-0123456789", "salary bands April committee", groups=["eng"])
    assert "salary_bands.md" not in files_of(narrowed.json()["hits"])
    # X-API-Key works too; the document list is filtered by the key's groups
    docs = httpx.get(f"{keyed_url}/v1/documents", headers={"X-API-Key": "eng-key-0123456789"}).json()
    assert {d["file"] for d in docs["documents"]} == {"vpn.md", "deployments.md"}
    # health stays public (load balancers), and says that keys are required
    assert httpx.get(f"{keyed_url}/healthz").json()["auth"] is True


def test_upload_with_a_key_gets_its_groups(keyed_url, tiny_kb):
    files = {"files": ("hr_bonus.txt", b"The annual bonus is paid in March to every employee.\n")}
    r = httpx.post(f"{keyed_url}/v1/documents", files=files, headers={"X-API-Key": "hr-key-0123456789"},
                   timeout=120)
    assert r.status_code == 201, r.text
    assert r.json()["groups"] == ["hr"]
    denied = httpx.post(f"{keyed_url}/v1/documents", files=files, data={"groups": "eng"},
                        headers={"X-API-Key": "hr-key-0123456789"}, timeout=60)
    assert denied.status_code == 403

    def files_for(key: str) -> set[str]:
        docs = httpx.get(f"{keyed_url}/v1/documents", headers={"X-API-Key": key}).json()["documents"]
        return {d["file"] for d in docs}

    assert "hr_bonus.txt" in files_for("hr-key-0123456789")
    assert "hr_bonus.txt" not in files_for("eng-key-0123456789")
    doc = next(d for d in tiny_kb.documents() if d["path"].endswith("hr_bonus.txt"))
    assert doc["groups"] == ["hr"]
    tiny_kb.delete(doc["doc_id"])


def test_history_makes_follow_ups_standalone():
    query = history_query("And what about part-time staff?",
                          ["How many days of annual leave do full-time employees get?"])
    assert "annual" in query and "part-time" in query
    assert history_query("Where is the VPN server?", []) == "Where is the VPN server?"


def test_deleting_an_unreadable_document_is_not_found(keyed_url, tiny_kb):
    hr_doc = next(d for d in tiny_kb.documents() if d["path"].endswith("salary_bands.md"))
    r = httpx.delete(f"{keyed_url}/v1/documents/{hr_doc['doc_id']}",
                     headers={"X-API-Key": "eng-key-0123456789"})
    assert r.status_code == 404
    assert any(d["doc_id"] == hr_doc["doc_id"] for d in tiny_kb.documents())


def test_without_keys_only_localhost(tmp_path):
    with pytest.raises(ConfigError, match="refusing to listen on '0.0.0.0' without API keys"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", KEYS)
    check_bind("127.0.0.1", None)
    from kb_assistant.cli import main

    assert main(["serve", "--kb", str(tmp_path / "kb"), "--host", "0.0.0.0"]) == 1


def test_bad_api_key_file(tmp_path):
    bad = tmp_path / "keys.json"
    bad.write_text('{"short": ["hr"]}')
    with pytest.raises(ConfigError, match="at least 8 characters"):
        create_app(object(), api_keys=bad)
    with pytest.raises(ConfigError, match="not found"):
        create_app(object(), api_keys=tmp_path / "missing.json")


# ------------------------------------------------------------------ documents
def test_upload_search_list_delete(url, tiny_kb):
    files = {"files": ("meeting notes.txt", b"The quarterly offsite is held in Lisbon in October.\n")}
    r = httpx.post(f"{url}/v1/documents", files=files, timeout=120)
    assert r.status_code == 201, r.text
    assert r.json()["stored"] == ["meeting notes.txt"]
    stored = tiny_kb.path / "uploads" / "_public" / "meeting notes.txt"  # no groups: the public folder
    assert stored.is_file() and r.json()["paths"] == ["uploads/_public/meeting notes.txt"]
    hits = httpx.post(f"{url}/v1/search", json={"query": "where is the quarterly offsite"}).json()["hits"]
    assert hits[0]["file"] == "meeting notes.txt"
    docs = httpx.get(f"{url}/v1/documents").json()["documents"]
    doc = next(d for d in docs if d["file"] == "meeting notes.txt")
    r = httpx.delete(f"{url}/v1/documents/{doc['doc_id']}")
    assert r.status_code == 200 and r.json()["chunks_removed"] >= 1
    assert not stored.exists()
    assert httpx.delete(f"{url}/v1/documents/{doc['doc_id']}").status_code == 404


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "sub/evil.txt", "..", ".", ""])
def test_upload_rejects_unsafe_names(url, tiny_kb, name):
    r = httpx.post(f"{url}/v1/documents", files={"files": (name, b"evil text here\n")}, timeout=60)
    assert r.status_code in (400, 422), r.text
    root = tiny_kb.path.parent
    assert not list(root.rglob("evil.txt"))


def test_safe_filename_rules():
    assert safe_filename("report 2024 (final).pdf") == "report 2024 (final).pdf"
    assert safe_filename("年假政策.docx") == "年假政策.docx"
    assert safe_filename(".hidden.txt") == "hidden.txt"
    assert safe_filename('we<i>rd:na|me?.txt') == "we_i_rd_na_me_.txt"
    long = safe_filename("a" * 500 + ".txt")
    assert len(long) <= 150 and long.endswith(".txt")
    for bad in ["../x.txt", "/x.txt", "C:\\x.txt", "a\\b.txt", "a/b.txt", "..", "", "x\x00.txt"]:
        with pytest.raises(ValueError):
            safe_filename(bad)


def test_upload_size_limit(url, tiny_kb):
    r = httpx.post(f"{url}/v1/documents", files={"files": ("big.txt", b"word " * 2000)}, timeout=60)
    assert r.status_code == 413
    assert "upload limit" in r.json()["error"]["message"]
    assert not list((tiny_kb.path / "uploads").rglob("big.txt"))
    assert not [p for p in (tiny_kb.path / "uploads").rglob("*") if p.is_file() and "big" in p.name]


def test_upload_of_unreadable_file_is_422_and_not_kept(url, tiny_kb):
    r = httpx.post(f"{url}/v1/documents", files={"files": ("broken.pdf", b"not a pdf at all")}, timeout=60)
    assert r.status_code == 422, r.text
    assert not list((tiny_kb.path / "uploads").rglob("broken.pdf"))


# ------------------------------------------------------------------ queue and health
def test_queue_bounds_waiting_generations_and_health_stays_responsive(tmp_path):
    kb = build_tiny_kb(tmp_path)
    gen = BlockingGenerator()
    kb.engine.generator_factory = lambda: gen  # the real engine and retrieval; a generator we control
    app = create_app(kb, max_waiting=1)
    question = {"question": VPN_QUESTION, "use_cache": False, "answer_mode": "generate"}
    with running_server(app) as base:
        results: dict[str, int] = {}

        def ask(name: str) -> None:
            r = httpx.post(f"{base}/v1/ask", json=question, timeout=60)
            results[name] = r.status_code

        first = threading.Thread(target=ask, args=("first",))
        first.start()
        assert gen.entered.acquire(timeout=30)  # the first answer is generating
        second = threading.Thread(target=ask, args=("second",))
        second.start()
        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/healthz").json()["queue"]["waiting"] < 1:
            assert time.monotonic() < deadline, "the second answer never queued"
            time.sleep(0.02)
        t0 = time.perf_counter()
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and time.perf_counter() - t0 < 1.0
        assert health.json()["queue"]["running"] == 1
        # retrieval and answers that need no generation do not wait for the generator
        assert httpx.post(f"{base}/v1/search", json={"query": "vpn"}, timeout=5).status_code == 200
        unknown = httpx.post(f"{base}/v1/ask", json={"question": UNKNOWN_QUESTION}, timeout=5)
        assert unknown.status_code == 200 and unknown.json()["unknown"] is True
        # a third generation finds the line full: 503 with Retry-After, streamed or not
        busy = httpx.post(f"{base}/v1/ask", json=question, timeout=10)
        assert busy.status_code == 503 and busy.headers.get("retry-after")
        stream = httpx.post(f"{base}/v1/ask", json={**question, "stream": True}, timeout=10)
        assert stream.status_code == 503
        gen.release.set()
        first.join(30)
        second.join(30)
        assert results == {"first": 200, "second": 200}
        queue = httpx.get(f"{base}/healthz").json()["queue"]
        assert queue["rejected"] == 2 and queue["served"] == 2 and gen.calls == 2
    kb.close()


def test_generation_gate_is_fifo_bounded_and_times_out():
    gate = GenerationGate(concurrency=1, max_waiting=2, timeout=10)
    hold, order = threading.Event(), []

    def wait_for(cond) -> None:
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline
            time.sleep(0.005)

    def first() -> None:
        with gate.slot():
            hold.wait(10)

    def later(i: int) -> None:
        with gate.slot():
            order.append(i)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    wait_for(lambda: gate.running == 1)
    for i in range(2):
        threads.append(threading.Thread(target=later, args=(i,)))
        threads[-1].start()
        wait_for(lambda i=i: gate.waiting == i + 1)
    with pytest.raises(QueueFull):
        gate.check()
    hold.set()
    for t in threads:
        t.join(10)
    assert order == [0, 1] and gate.stats()["served"] == 3 and gate.stats()["rejected"] == 1

    quick = GenerationGate(concurrency=1, max_waiting=1, timeout=0.2)
    errors = []
    with quick.slot():
        t = threading.Thread(target=lambda: errors.append(pytest.raises(QueueFull, quick.slot().__enter__)))
        t.start()
        t.join(5)
    assert errors and quick.waiting == 0 and quick.running == 0


# ------------------------------------------------------------------ real generation (slow)
@pytest.mark.slow
def test_streamed_answer_with_sources_and_health_during_generation(tiny_kb):
    question = VPN_QUESTION
    with running_server(create_app(tiny_kb)) as base:
        health_times: list[float] = []
        with httpx.stream("POST", f"{base}/v1/ask", json={"question": question, "stream": True,
                                                           "use_cache": False}, timeout=300) as resp:
            events = []
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if len(events) == 1:  # generating now: health must answer at once
                        t0 = time.perf_counter()
                        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
                        health_times.append(time.perf_counter() - t0)
        done = events[-1]
        assert done["unknown"] is False
        assert "1194" in done["text"] or "vpn.acme.example" in done["text"]
        assert done["sources"][0]["file"] == "vpn.md" and done["citations"]
        assert health_times and health_times[0] < 1.0
