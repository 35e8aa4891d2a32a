"""Shared test set-up: offline model hub, capped threads in parallel workers, small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two torch processes on two cores slow each other many-fold: one thread per worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def write():
    """write(path, text, encoding='utf-8') -> Path, creating parent folders."""

    def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode(encoding))
        return path

    return _write


@pytest.fixture
def kb_factory(tmp_path):
    """Open knowledge bases under tmp_path; closed at teardown."""
    from kb_assistant import KnowledgeBase

    opened = []

    def _open(name: str = "kb", config=None):
        kb = KnowledgeBase(tmp_path / name, config)
        opened.append(kb)
        return kb

    yield _open
    for kb in opened:
        try:
            kb.close()
        except Exception:
            pass
