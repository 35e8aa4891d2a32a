"""The remote generator against a real OpenAI-compatible server: the project's own ``kb serve``
(uvicorn in a thread, a stand-in generator behind it, so no model loads); its errors are one line and
the query engine then answers extractively."""

from __future__ import annotations

import socket
import threading

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")

from server_helpers import KEYS, BlockingGenerator, build_tiny_kb  # noqa: E402

from kb_assistant import KnowledgeBase  # noqa: E402
from kb_assistant.answering.build import generator_factory  # noqa: E402
from kb_assistant.config import GenerationConfig, KBConfig  # noqa: E402
from kb_assistant.errors import ConfigError, GeneratorUnavailable  # noqa: E402
from kb_assistant.remote_generation import RemoteGenerator, approx_tokens  # noqa: E402
from kb_assistant.server import create_app, running_server  # noqa: E402

VPN = [{"role": "user", "content": "What is the address and port of the company VPN server?"}]


@pytest.fixture(scope="module")
def remote_kb(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("remote"))
    gen = BlockingGenerator()
    gen.release.set()
    kb.engine.generator_factory = lambda: gen
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def remote_url(remote_kb):
    with running_server(create_app(remote_kb)) as url:
        yield f"{url}/v1"


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_generate_and_stream_through_a_kb_serve_endpoint(remote_url):
    gen = RemoteGenerator(remote_url).warm_up()
    assert gen.model == "kb-assistant"  # the server's first model from /v1/models
    text = gen.generate(VPN, GenerationConfig(max_new_tokens=32))
    assert "1194" in text
    pieces = list(gen.stream(VPN, GenerationConfig(max_new_tokens=32)))
    assert len(pieces) > 1 and "1194" in "".join(pieces)
    assert gen.count_tokens("one two three four") == approx_tokens("one two three four") > 0
    assert "user: What is" in gen.render(VPN)


def test_api_key_comes_from_the_named_environment_variable(remote_kb, monkeypatch):
    with running_server(create_app(remote_kb, api_keys=KEYS)) as url:
        without = RemoteGenerator(f"{url}/v1", "kb-assistant")
        with pytest.raises(GeneratorUnavailable, match="HTTP 401"):
            without.generate(VPN)
        keyed = RemoteGenerator(f"{url}/v1", "kb-assistant", api_key_env="KB_TEST_REMOTE_KEY")
        with pytest.raises(GeneratorUnavailable, match="KB_TEST_REMOTE_KEY"):
            keyed.generate(VPN)
        monkeypatch.setenv("KB_TEST_REMOTE_KEY", next(iter(KEYS)))
        assert "1194" in keyed.generate(VPN)


def test_connection_refused_and_timeout_are_one_line_errors():
    refused = RemoteGenerator(f"http://127.0.0.1:{dead_port()}/v1", "m", timeout_s=5)
    with pytest.raises(GeneratorUnavailable, match="connection refused") as err:
        refused.generate(VPN)
    assert "\n" not in str(err.value)
    with pytest.raises(GeneratorUnavailable, match="connection refused"):
        list(refused.stream(VPN))
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        slow = RemoteGenerator(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "m", timeout_s=0.3)
        with pytest.raises(GeneratorUnavailable, match=r"no reply within 0.3 s"):
            slow.generate(VPN)
    finally:
        silent.close()


def test_settings_and_factory():
    with pytest.raises(ConfigError, match="remote_url"):
        KBConfig.from_dict({"generation": {"remote_url": "ftp://x"}})
    cfg = KBConfig.from_dict({"generation": {"remote_url": "http://127.0.0.1:9/v1", "remote_model": "m",
                                             "remote_api_key_env": "X", "remote_timeout_s": 3}})
    gen = generator_factory(cfg, None)()
    assert isinstance(gen, RemoteGenerator) and gen.timeout_s == 3 and gen.api_key_env == "X"


def test_the_engine_answers_extractively_when_the_remote_is_down(tmp_path):
    build_tiny_kb(tmp_path).close()
    url = f"http://127.0.0.1:{dead_port()}/v1"
    kb = KnowledgeBase(tmp_path / "kb", {"generation": {"remote_url": url, "remote_model": "m"}})
    try:
        answer = kb.ask(VPN[0]["content"], use_cache=False)
        assert answer.mode == "extractive" and "1194" in answer.text
        stream = kb.ask_stream(VPN[0]["content"], use_cache=False)
        text = "".join(stream)
        assert "1194" in text and stream.answer.mode == "extractive"
    finally:
        kb.close()


def test_a_remote_generator_lets_the_server_run_answers_concurrently(tmp_path):
    build_tiny_kb(tmp_path).close()
    kb = KnowledgeBase(tmp_path / "kb", {"generation": {"remote_url": "http://127.0.0.1:9/v1",
                                                        "remote_model": "m"}, "server": {"batch_max": 4}})
    try:
        app = create_app(kb)
        state = app.state.kb_server
        assert state.queue.concurrency == 1
        kb.engine.generator  # noqa: B018 - what the first generating request does
        assert state.queue.concurrency == 4 and state.batching()["batch_max"] == 4
    finally:
        kb.close()


def test_threads_are_not_left_behind(remote_url):
    before = threading.active_count()
    gen = RemoteGenerator(remote_url, "kb-assistant")
    stream = gen.stream(VPN)
    next(stream)
    stream.close()
    assert threading.active_count() <= before
