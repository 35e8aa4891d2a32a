"""Batched generation (left padding, one ``model.generate`` for several prompts) on the real embedded
SmolLM2-135M-Instruct: greedy rows equal one-at-a-time generation; rows stream and stop on their own."""

from __future__ import annotations

import threading

import pytest

from kb_assistant.config import GenerationConfig
from kb_assistant.generation import Generator, default_generator_path

SYSTEM = {"role": "system", "content": "You answer questions using only the numbered passages. Be brief."}
CHATS = [
    [SYSTEM, {"role": "user", "content": "Passages:\n[1] The annual leave entitlement is 15 working days per "
                                         "year.\n\nQuestion: How many days of annual leave do staff get?"}],
    [SYSTEM, {"role": "user", "content": "Passages:\n[1] The VPN server is vpn.acme.example on port 1194.\n\n"
                                         "Question: Which port does the VPN use?"}],
    [SYSTEM, {"role": "user", "content": "Question: What colour is the sky on a clear day?"}],
]


@pytest.fixture(scope="module")
def generator():
    return Generator(default_generator_path(), device="cpu").warm_up()


class Sink:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.ended = threading.Event()
        self.cancelled = threading.Event()

    def put(self, text: str) -> None:
        self.pieces.append(text)

    def end(self) -> None:
        self.ended.set()


def test_greedy_batch_equals_one_at_a_time(generator):
    for cfg in (GenerationConfig(max_new_tokens=16), GenerationConfig(max_new_tokens=24, max_sentences=1)):
        single = [generator.generate(chat, cfg) for chat in CHATS]
        assert generator.generate_batch(CHATS, cfg) == single
        assert generator.generate_batch(CHATS[:1], cfg) == single[:1]
    assert generator.generate_batch([], GenerationConfig()) == []


def test_rows_stream_their_own_text_and_stop_alone(generator):
    cfg = GenerationConfig(max_new_tokens=16)
    single = [generator.generate(chat, cfg) for chat in CHATS[:2]]
    sinks = [Sink(), Sink()]
    sinks[1].cancelled.set()  # closed before its first token: its row stops, the other goes on
    out = generator.generate_batch(CHATS[:2], cfg, sinks=sinks)
    assert "".join(sinks[0].pieces).strip() == single[0] == out[0]
    assert len(out[1]) < len(single[1]) and all(s.ended.is_set() for s in sinks)
