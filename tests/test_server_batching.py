"""The server with dynamic batching: concurrent answers share batches of a batching generator (a
stand-in, no model), the gate lets ``batch_max`` through, and a batched generation past the request
timeout is stopped and frees its slot."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
httpx = pytest.importorskip("httpx")

from server_helpers import BlockingGenerator, build_tiny_kb  # noqa: E402

from kb_assistant.server import create_app, running_server  # noqa: E402

VPN_QUESTION = "What is the address and port of the company VPN server?"
QUESTION = {"question": VPN_QUESTION, "use_cache": False, "answer_mode": "generate"}


class BatchingStandIn:
    """Streams the VPN answer word by word to every row of a batch; ``endless`` rows never end by
    themselves (until their stream is closed). Records the batch sizes."""

    TEXT = BlockingGenerator.TEXT

    def __init__(self, endless: bool = False) -> None:
        self.batches: list[int] = []
        self.endless = endless

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def render(self, messages):
        return messages[-1]["content"]

    def generate(self, messages, config=None):
        return self.TEXT

    def stream(self, messages, config=None):
        yield from self._words(threading.Event())

    def _words(self, cancelled):
        while True:
            for word in self.TEXT.split(" "):
                time.sleep(0.02)
                if cancelled.is_set():
                    return
                yield word + " "
            if not self.endless:
                return

    def generate_batch(self, messages_list, config=None, sinks=()):
        self.batches.append(len(messages_list))
        iters = [self._words(s.cancelled) for s in sinks]
        live = list(zip(iters, sinks, strict=True))
        while live:
            for it, sink in list(live):
                piece = next(it, None)
                if piece is None:
                    sink.end()
                    live.remove((it, sink))
                else:
                    sink.put(piece)
        return [self.TEXT] * len(messages_list)


def test_concurrent_answers_are_batched(tmp_path):
    kb = build_tiny_kb(tmp_path)
    gen = BatchingStandIn()
    kb.engine.generator_factory = lambda: gen
    app = create_app(kb, config={"batch_max": 4, "batch_wait_ms": 300})
    with running_server(app) as base:
        def ask(_: int) -> dict:
            r = httpx.post(f"{base}/v1/ask", json=QUESTION, timeout=60)
            assert r.status_code == 200, r.text
            return r.json()

        httpx.post(f"{base}/v1/ask", json=QUESTION, timeout=60)  # creates the generator: the gate widens
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, range(4)))
        assert all(a["mode"] == "generated" and "1194" in a["text"] for a in answers)
        with httpx.stream("POST", f"{base}/v1/ask", json={**QUESTION, "stream": True}, timeout=60) as resp:
            events = [line for line in resp.iter_lines() if line.startswith("event:")]
        assert "event: done" in events
        health = httpx.get(f"{base}/healthz").json()
        assert health["queue"]["concurrency"] == 4 and health["queue"]["running"] == 0
        assert health["batching"]["largest_batch"] >= 2 and max(gen.batches) >= 2
    kb.close()


def test_batched_generation_past_the_timeout_is_stopped(tmp_path):
    kb = build_tiny_kb(tmp_path)
    gen = BatchingStandIn(endless=True)
    kb.engine.generator_factory = lambda: gen
    app = create_app(kb, config={"batch_max": 4, "batch_wait_ms": 200}, request_timeout=1.5)
    with running_server(app) as base:
        def ask(_: int) -> httpx.Response:
            return httpx.post(f"{base}/v1/ask", json=QUESTION, timeout=60)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(ask, range(3)))
        assert time.perf_counter() - t0 < 10
        for r in responses:
            assert r.status_code == 504 and "request_timeout_s" in r.json()["error"]["message"]
        with httpx.stream("POST", f"{base}/v1/ask", json={**QUESTION, "stream": True}, timeout=60) as resp:
            lines = [line for line in resp.iter_lines() if line.startswith("data:")]
        assert json.loads(lines[-1][5:])["status"] == 504
        queue = httpx.get(f"{base}/healthz").json()["queue"]
        assert queue["running"] == 0 and queue["timed_out"] == 4 and queue["longest_hold_s"] < 2.5
    kb.close()
