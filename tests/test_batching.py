"""The batcher (``kb_assistant.answering.batching``): concurrent requests share one batch, results go
back to the right caller, closed streams leave the line, errors reach every caller; with a stand-in
generator (no model), plus one run on the real SmolLM2."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kb_assistant.answering.batching import Batcher
from kb_assistant.config import GenerationConfig, ServerConfig
from kb_assistant.errors import ConfigError, KBError


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class FakeBatchGenerator:
    """Answers "reply to <question>" word by word; records the size of every batch."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.fail, self.delay = fail, delay
        self.single = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def render(self, messages):
        return messages[-1]["content"]

    def _words(self, messages):
        return f"reply to {messages[-1]['content']}.".split(" ")

    def generate(self, messages, config=None):
        self.single += 1
        return " ".join(self._words(messages))

    def stream(self, messages, config=None):
        self.single += 1
        for i, word in enumerate(self._words(messages)):
            yield word if i == 0 else " " + word

    def generate_batch(self, messages_list, config=None, sinks=()):
        self.batches.append(len(messages_list))
        if self.fail:
            raise KBError("the model broke")
        time.sleep(self.delay)
        for messages, sink in zip(messages_list, sinks, strict=True):
            for i, word in enumerate(self._words(messages)):
                if not sink.cancelled.is_set():
                    sink.put(word if i == 0 else " " + word)
            sink.end()
        return [" ".join(self._words(m)) for m in messages_list]


def run_together(batcher: Batcher, n: int, config: GenerationConfig | None = None) -> list[str]:
    start = threading.Barrier(n)

    def one(i: int) -> str:
        start.wait()
        return batcher.generate(chat(f"q{i}"), config)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_requests_share_batches_up_to_batch_max():
    gen = FakeBatchGenerator(delay=0.05)
    batcher = Batcher(gen, batch_max=4, batch_wait_ms=200)
    assert run_together(batcher, 8) == [f"reply to q{i}." for i in range(8)]
    assert sum(gen.batches) == 8 and max(gen.batches) == 4 and len(gen.batches) <= 3
    assert batcher.stats()["largest_batch"] == 4 and batcher.render(chat("x")) == "x"


def test_a_lone_request_and_unbatchable_ones_use_the_generator_itself():
    gen = FakeBatchGenerator()
    batcher = Batcher(gen, batch_max=4, batch_wait_ms=1)
    assert batcher.generate(chat("alone")) == "reply to alone."
    assert run_together(batcher, 3, GenerationConfig(num_beams=2)) == [f"reply to q{i}." for i in range(3)]
    assert run_together(batcher, 2, GenerationConfig(seed=3)) == ["reply to q0.", "reply to q1."]
    assert gen.batches == [] and gen.single == 6


def test_batch_max_1_and_generators_without_batching_pass_through():
    gen = FakeBatchGenerator()
    assert run_together(Batcher(gen, batch_max=1), 3) == [f"reply to q{i}." for i in range(3)]
    assert gen.batches == []

    class Plain:
        def generate(self, messages, config=None):
            return "plain"

        def stream(self, messages, config=None):
            yield "plain"

    assert Batcher(Plain(), batch_max=8).generate(chat("x")) == "plain"
    assert list(Batcher(Plain(), batch_max=8).stream(chat("x"))) == ["plain"]


def test_errors_reach_every_caller_of_the_batch():
    batcher = Batcher(FakeBatchGenerator(fail=True), batch_max=4, batch_wait_ms=200)
    errors = []

    def one(i: int) -> None:
        try:
            batcher.generate(chat(f"q{i}"))
        except KBError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == ["the model broke"] * 3


def test_a_waiting_stream_heartbeats_and_leaves_the_line_when_closed(monkeypatch):
    monkeypatch.setattr("kb_assistant.answering.batching.HEARTBEAT_S", 0.05)
    gen = FakeBatchGenerator()
    batcher = Batcher(gen, batch_max=4, batch_wait_ms=5_000)  # waits long for a second request
    stream = batcher.stream(chat("q"))
    assert next(stream) == ""  # still waiting: a heartbeat, so the caller can check its deadline
    stream.close()
    assert batcher.stats()["waiting"] == 0
    time.sleep(0.1)
    assert gen.batches == [] and gen.single == 0


def test_settings_are_validated():
    assert ServerConfig().batch_max >= 1
    with pytest.raises(ConfigError, match="batch_max"):
        ServerConfig(batch_max=0)
    with pytest.raises(ConfigError, match="batch_wait_ms"):
        ServerConfig(batch_wait_ms=-1)
    with pytest.raises(ConfigError):
        Batcher(FakeBatchGenerator(), batch_max=0)


@pytest.mark.slow
def test_real_model_batched_answers_equal_one_at_a_time():
    from kb_assistant.generation import Generator, default_generator_path

    gen = Generator(default_generator_path(), device="cpu").warm_up()
    cfg = GenerationConfig(max_new_tokens=12)
    questions = ["Name a colour.", "Name a fruit.", "Name an animal.", "Name a city."]
    single = [gen.generate(chat(q), cfg) for q in questions]
    batcher = Batcher(gen, batch_max=4, batch_wait_ms=500)
    start = threading.Barrier(4)

    def one(q: str) -> str:
        start.wait()
        return batcher.generate(chat(q), cfg)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, questions)) == single
    assert batcher.stats()["largest_batch"] >= 2
