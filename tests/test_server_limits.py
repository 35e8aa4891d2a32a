"""Every request is bounded (#16 item 3): field and conversation lengths, a token budget before the
generator, body sizes, per-key rate limits and a request timeout that stops a generation and frees the
generator's slot. Real uvicorn, real HTTP, real keys; a stand-in generator only where the model's speed
would decide the outcome."""

from __future__ import annotations

import json
import socket
import time

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai", reason="the openai client is not installed (dev extra)")

from server_helpers import KEYS, UNKNOWN_QUESTION, EndlessGenerator, build_tiny_kb  # noqa: E402

from kb_assistant.server import create_app, running_server  # noqa: E402
from kb_assistant.server.guard import RateLimiter  # noqa: E402

VPN_QUESTION = "What is the address and port of the company VPN server?"
HR_KEY, ENG_KEY = "hr-key-0123456789", "eng-key-0123456789"


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("limits"))
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def url(tiny_kb):
    app = create_app(tiny_kb, config={"max_question_tokens": 40, "rate_limit_per_minute": 0})
    with running_server(app) as base:
        yield base


def refused(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert "\n" not in message and all(w in message for w in words), message
    return message


def chat(url: str, messages: list[dict], **extra) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"model": "kb-assistant", "messages": messages,
                                                         **extra}, timeout=60)


# ------------------------------------------------------------------ lengths
def test_an_oversize_chat_message_is_refused_at_once(url):
    t0 = time.perf_counter()
    refused(chat(url, [{"role": "user", "content": "vpn " * 15_000}]), 413, "60,000 characters",
            "max_question_chars")
    refused(chat(url, [{"role": "user", "content": "x" * 1_000_000}]), 413, "request body",
            "max_question_chars")
    parts = [{"role": "user", "content": [{"type": "text", "text": "y" * 5000}]}]
    refused(chat(url, parts), 413, "the last message", "max_question_chars")
    assert time.perf_counter() - t0 < 10  # was 271 s and 5.7 GB for the 60 KB message


def test_the_whole_conversation_is_bounded(url):
    earlier = [{"role": "user", "content": "z" * 19_000}, {"role": "assistant", "content": "w" * 19_000}] * 3
    messages = [{"role": "system", "content": "s" * 19_000}, *earlier, {"role": "user", "content": "vpn?"}]
    refused(chat(url, messages), 413, "the conversation (7 earlier messages)", "max_conversation_chars")
    r = httpx.post(f"{url}/v1/ask", json={"question": "vpn?", "history": earlier[:6]}, timeout=60)
    refused(r, 413, "max_conversation_chars")


def test_every_other_text_field_is_bounded(url, tiny_kb):
    long = "g" * 300
    checks = [
        httpx.post(f"{url}/v1/search", json={"query": "q" * 4001}),
        httpx.post(f"{url}/v1/search", json={"query": "vpn", "groups": [long]}),
        httpx.post(f"{url}/v1/search", json={"query": "vpn", "groups": ["g"] * 65}),
        httpx.post(f"{url}/v1/search", json={"query": "vpn", "filters": {"source": [long]}}),
        httpx.post(f"{url}/v1/search", json={"query": "vpn", "filters": {"tags": {"a": 1}}}),
        httpx.post(f"{url}/v1/ask", json={"question": "q" * 4001}),
        httpx.post(f"{url}/v1/ask", json={"question": "vpn", "groups": [long]}),
        chat(url, [{"role": "user", "content": "vpn"}], model=long),
        httpx.delete(f"{url}/v1/documents/{'d' * 300}"),
        httpx.post(f"{url}/v1/documents", files={"files": ("a.txt", b"text here\n")}, data={"groups": long}),
    ]
    for r in checks:
        assert r.status_code in (400, 413), (r.request.url, r.status_code, r.text)
        assert "\n" not in r.json()["error"]["message"]
    assert [r.status_code for r in checks[:9]] == [413] * 9
    assert not list((tiny_kb.path / "uploads").rglob("a.txt"))


def test_the_token_budget_is_applied_before_retrieval_and_generation(url):
    question = "Which " + " ".join(f"word{i}" for i in range(60)) + " is the VPN port?"
    message = refused(httpx.post(f"{url}/v1/ask", json={"question": question}, timeout=60), 413,
                      "tokens", "max_question_tokens")
    assert "the limit is 40" in message
    # a follow-up counts with the conversation terms folded into it (at most six: a long history passes)
    history = [{"role": "user", "content": " ".join(f"topic{i}" for i in range(30))}]
    r = httpx.post(f"{url}/v1/ask", json={"question": "and this?", "history": history * 3}, timeout=60)
    assert r.status_code == 200, r.text
    ok = httpx.post(f"{url}/v1/ask", json={"question": UNKNOWN_QUESTION}, timeout=60)
    assert ok.status_code == 200


def test_bodies_are_bounded_with_and_without_content_length(url):
    big = json.dumps({"query": "vpn", "filters": {"source": ["x" * 100] * 10_000}}).encode()
    refused(httpx.post(f"{url}/v1/search", content=big, headers={"content-type": "application/json"}),
            413, "request body")

    def chunks():
        for _ in range(20):
            yield b" " * 65_536
        yield b'{"query": "vpn"}'

    r = httpx.post(f"{url}/v1/search", content=chunks(), headers={"content-type": "application/json"})
    refused(r, 413, "request body")
    # a 10 GB upload announced: refused before a byte of it is read (raw socket: clients check lengths)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/documents HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/"
                     f"form-data; boundary=b\r\nContent-Length: {10**10}\r\n\r\n".encode() + b"x" * 100)
        reply = b""
        while b"}}" not in reply and (chunk := sock.recv(65536)):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"max_upload_mb" in reply


# ------------------------------------------------------------------ rate limits
def test_token_bucket_refills():
    bucket = RateLimiter(per_minute=60)  # one a second, bursts of 6
    assert [bucket.take("k", now=0.0) for _ in range(6)] == [0.0] * 6
    assert bucket.take("k", now=0.0) == pytest.approx(1.0)
    assert bucket.take("other", now=0.0) == 0.0
    assert bucket.take("k", now=1.5) == 0.0 and bucket.take("k", now=1.5) > 0
    assert RateLimiter(per_minute=0).take("k") == 0.0


def test_rate_limits_are_per_api_key_with_retry_after(tiny_kb):
    app = create_app(tiny_kb, api_keys=KEYS, rate_limit_per_minute=30)  # bursts of 3, one per 2 s
    with running_server(app) as base:
        statuses = [httpx.get(f"{base}/v1/models", headers={"X-API-Key": HR_KEY}).status_code
                    for _ in range(8)]
        assert statuses[:3] == [200] * 3 and 429 in statuses
        r = httpx.get(f"{base}/v1/models", headers={"X-API-Key": HR_KEY})
        refused(r, 429, "this API key", "30 requests a minute", "rate_limit_per_minute", "--rate-limit")
        assert int(r.headers["retry-after"]) >= 1
        assert httpx.get(f"{base}/v1/models", headers={"X-API-Key": ENG_KEY}).status_code == 200
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=HR_KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.models.list()
        assert httpx.get(f"{base}/healthz").status_code == 200  # health is never limited
        assert httpx.get(f"{base}/healthz").json()["rate_limited"] >= 2


def test_without_keys_the_limit_is_per_client_address(tiny_kb):
    with running_server(create_app(tiny_kb, rate_limit_per_minute=12)) as base:  # bursts of 1
        assert httpx.post(f"{base}/v1/search", json={"query": "vpn"}).status_code == 200
        refused(httpx.post(f"{base}/v1/search", json={"query": "vpn"}), 429, "this client")


# ------------------------------------------------------------------ request timeout
def test_a_generation_past_the_timeout_is_stopped_and_frees_the_slot(tmp_path):
    kb = build_tiny_kb(tmp_path)
    gen = EndlessGenerator(endless=2)
    kb.engine.generator_factory = lambda: gen  # the real engine and retrieval; a generator that never ends
    question = {"question": VPN_QUESTION, "use_cache": False, "answer_mode": "generate"}
    with running_server(create_app(kb, request_timeout=1.5)) as base:
        t0 = time.perf_counter()
        r = httpx.post(f"{base}/v1/ask", json=question, timeout=60)
        took = time.perf_counter() - t0
        refused(r, 504, "generation stopped", "request_timeout_s", "--request-timeout")
        assert took < 10 and gen.closed == 1
        queue = httpx.get(f"{base}/healthz").json()["queue"]
        assert queue["running"] == 0 and queue["timed_out"] == 1 and queue["longest_hold_s"] < 2.5
        # streamed: the event stream ends with a 504 error event, the model's stream is closed too
        with httpx.stream("POST", f"{base}/v1/ask", json={**question, "stream": True}, timeout=60) as resp:
            lines = [line for line in resp.iter_lines() if line.startswith("data:")]
        last = json.loads(lines[-1][5:])
        assert last["status"] == 504 and "request_timeout_s" in last["message"] and gen.closed == 2
        # the next request gets the slot and its answer
        r = httpx.post(f"{base}/v1/ask", json=question, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["mode"] == "generated" and "1194" in r.json()["text"]
        queue = httpx.get(f"{base}/healthz").json()["queue"]
        assert queue["running"] == 0 and queue["served"] == 3 and queue["longest_hold_s"] < 2.5
    kb.close()


@pytest.mark.slow
def test_the_real_generator_is_stopped_at_the_timeout(tmp_path):
    """The real model (SmolLM2): a generation past a tiny timeout is stopped within a token or two, and
    the next request gets the generator (its own generation starts: it is stopped too, not refused)."""
    from kb_assistant import KnowledgeBase

    built = build_tiny_kb(tmp_path)
    built.close()
    kb = KnowledgeBase(built.path, config=built.config.merged({"query": {"max_sentences": None}}))
    kb.engine.generator.warm_up()  # the model loads outside the measured requests
    question = {"question": VPN_QUESTION, "use_cache": False, "answer_mode": "generate",
                "max_new_tokens": 1024}
    with running_server(create_app(kb, request_timeout=0.1)) as base:
        for _ in range(2):
            r = httpx.post(f"{base}/v1/ask", json=question, timeout=120)
            refused(r, 504, "generation stopped", "request_timeout_s")
        queue = httpx.get(f"{base}/healthz").json()["queue"]
        assert queue["running"] == 0 and queue["served"] == 2 and queue["timed_out"] == 2
        assert queue["rejected"] == 0 and queue["longest_hold_s"] < 5.0
    kb.close()
