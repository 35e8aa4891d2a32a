"""The OpenAI-compatible API, exercised with the official ``openai`` client against real uvicorn."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
openai = pytest.importorskip("openai", reason="the openai client is not installed (dev extra)")
httpx = pytest.importorskip("httpx")

from server_helpers import KEYS, UNKNOWN_QUESTION, build_tiny_kb  # noqa: E402

from kb_assistant.server import create_app, running_server  # noqa: E402

VPN_QUESTION = "What is the address and port of the company VPN server?"


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory):
    kb = build_tiny_kb(tmp_path_factory.mktemp("openai"))
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def base_url(tiny_kb):
    with running_server(create_app(tiny_kb)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-locally", max_retries=0, timeout=300)


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["kb-assistant"]


def test_chat_completion_unknown(client):
    resp = client.chat.completions.create(model="kb-assistant",
                                          messages=[{"role": "user", "content": UNKNOWN_QUESTION}])
    assert resp.object == "chat.completion"
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content and "Sources:" not in choice.message.content
    extra = resp.model_extra
    assert extra["kb"]["unknown"] is True and "sources" in extra


def test_chat_completion_stream_unknown(client):
    stream = client.chat.completions.create(
        model="kb-assistant", stream=True,
        messages=[{"role": "system", "content": "You are helpful."},
                  {"role": "user", "content": UNKNOWN_QUESTION}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["kb"]["unknown"] is True


def test_chat_completion_extractive_answer_cites_sources(client):
    """kb extension fields go in extra_body: answer_mode="extractive" answers without the generator."""
    messages = [{"role": "user", "content": VPN_QUESTION}]
    resp = client.chat.completions.create(model="kb-assistant", messages=messages,
                                          extra_body={"answer_mode": "extractive"})
    content = resp.choices[0].message.content
    assert resp.model_extra["kb"]["unknown"] is False and resp.model_extra["kb"]["mode"] == "extractive"
    assert "1194" in content and "[1]" in content
    assert "Sources:\n[1] vpn.md" in content
    assert resp.model_extra["sources"][0]["file"] == "vpn.md"
    stream = client.chat.completions.create(model="kb-assistant", stream=True,
                                            messages=[{"role": "user", "content": VPN_QUESTION}],
                                            extra_body={"answer_mode": "extractive"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1194" in text and "Sources:" in text
    assert chunks[-1].model_extra["sources"][0]["file"] == "vpn.md"


def test_errors_are_openai_shaped(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="kb-assistant",
                                       messages=[{"role": "assistant", "content": "hello"}])
    assert "user message" in str(err.value)


def test_api_keys_with_the_openai_client(tiny_kb):
    with running_server(create_app(tiny_kb, api_keys=KEYS)) as url:
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="not-a-key-123456", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="hr-key-0123456789", max_retries=0, timeout=300)
        resp = good.chat.completions.create(model="kb-assistant",
                                            messages=[{"role": "user", "content": UNKNOWN_QUESTION}])
        assert resp.model_extra["kb"]["unknown"] is True
        with pytest.raises(openai.PermissionDeniedError):
            good.chat.completions.create(model="kb-assistant", extra_body={"groups": ["eng"]},
                                         messages=[{"role": "user", "content": UNKNOWN_QUESTION}])


@pytest.mark.slow
def test_generated_answer_non_stream_and_stream(client):
    messages = [{"role": "user", "content": VPN_QUESTION}]
    resp = client.chat.completions.create(model="kb-assistant", messages=messages)
    content = resp.choices[0].message.content
    assert resp.model_extra["kb"]["unknown"] is False
    assert "1194" in content or "vpn.acme.example" in content
    assert "Sources:\n[1] vpn.md" in content
    stream = client.chat.completions.create(model="kb-assistant", messages=messages, stream=True,
                                            temperature=0)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "vpn.md" in text
    assert chunks[-1].model_extra["sources"][0]["file"] == "vpn.md"


@pytest.mark.slow
def test_follow_up_uses_the_conversation(client):
    messages = [{"role": "user", "content": "Which server do I use for the VPN?"},
                {"role": "assistant", "content": "The VPN server is vpn.acme.example [1]."},
                {"role": "user", "content": "And after how many hours are sessions disconnected?"}]
    resp = client.chat.completions.create(model="kb-assistant", messages=messages)
    assert resp.model_extra["kb"]["unknown"] is False
    assert resp.model_extra["sources"][0]["file"] == "vpn.md"
