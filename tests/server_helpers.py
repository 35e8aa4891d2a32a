"""Shared by the server tests: a tiny knowledge base with ACL groups, API keys, a gated KB wrapper."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

DOCS = {
    "public/vpn.md": ("# VPN access\n\nThe company VPN server is vpn.acme.example on port 1194. "
                      "VPN sessions are disconnected after 10 hours.\n", None),
    "hr/salary_bands.md": ("# Salary bands\n\nSalary bands are reviewed every April by the compensation "
                           "committee. Band S3 ranges from 50,000 to 65,000 euros per year.\n", ["hr"]),
    "eng/deployments.md": ("# Deployments\n\nProduction deployments happen on Tuesdays and Thursdays "
                           "through the Argo pipeline, after a green staging run.\n", ["eng"]),
}
KEYS = {"hr-key-0123456789": ["hr"], "eng-key-0123456789": ["eng"], "all-key-0123456789": ["hr", "eng"]}
UNKNOWN_QUESTION = "What is the capital of Australia?"


def build_tiny_kb(root: Path) -> Any:
    """A knowledge base with one public, one ``hr`` and one ``eng`` document."""
    from kb_assistant import KnowledgeBase

    files = root / "files"
    for rel, (text, _groups) in DOCS.items():
        path = files / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    kb = KnowledgeBase(root / "kb")
    for rel, (_text, groups) in DOCS.items():
        report = kb.ingest([files / rel], groups=groups, show_progress=False)
        assert report.ok, report.failed
    return kb


class BlockingGenerator:
    """A stand-in generator that blocks until ``release`` is set, then answers from the tiny KB's VPN
    document: queue and health tests then do not depend on the model's speed. Install it with
    ``kb.engine.generator_factory = lambda: gen`` on a knowledge base whose engine has no generator yet."""

    TEXT = "The VPN server is vpn.acme.example on port 1194."

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _wait(self) -> None:
        self.calls += 1
        self.entered.release()
        assert self.release.wait(60), "the test never released the generator"

    def generate(self, messages: Any, config: Any = None) -> str:
        self._wait()
        return self.TEXT

    def stream(self, messages: Any, config: Any = None) -> Any:
        self._wait()
        for word in self.TEXT.split(" "):
            yield word + " "


class EndlessGenerator:
    """A stand-in generator whose first ``endless`` streams never end by themselves (a word every
    ``delay`` s, all of them supported by the VPN document, no sentence end); it records each stream
    that was closed. Later calls answer at once, like :class:`BlockingGenerator` released."""

    TEXT = BlockingGenerator.TEXT
    LOOP = ("The", "VPN", "server", "is", "vpn.acme.example", "on", "port", "1194", "and")

    def __init__(self, endless: int = 1, delay: float = 0.02) -> None:
        self.endless, self.delay = endless, delay
        self.calls = 0
        self.closed = 0
        self.started = threading.Semaphore(0)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages: Any, config: Any = None) -> str:
        self.calls += 1
        return self.TEXT

    def stream(self, messages: Any, config: Any = None) -> Any:
        self.calls += 1
        if self.calls > self.endless:
            yield from (word + " " for word in self.TEXT.split(" "))
            return
        self.started.release()
        try:
            while True:
                for word in self.LOOP:
                    time.sleep(self.delay)
                    yield word + " "
        finally:
            self.closed += 1
