"""A server that follows the knowledge base (#16 item 4): ``kb ingest`` in a second process while the
server runs is seen by the next request, an edited file is found in its new version only, and a server
upload after a CLI ingest leaves saved indexes that ``verify()`` (in a fresh process) finds consistent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="server extra not installed (pip install 'kb-assistant[server]')")
httpx = pytest.importorskip("httpx")

from server_helpers import build_tiny_kb  # noqa: E402

from kb_assistant.server import create_app, running_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m kb_assistant.cli ...`` in a second process (this checkout's package)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "kb_assistant.cli", *args], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def verify_in_a_fresh_process(kb_path: Path) -> dict:
    code = ("import json, sys; from kb_assistant import KnowledgeBase; "
            "print(json.dumps(KnowledgeBase(sys.argv[1]).verify()))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(kb_path)], capture_output=True, text=True, env=env,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def search(url: str, query: str, k: int = 5) -> list[dict]:
    r = httpx.post(f"{url}/v1/search", json={"query": query, "k": k}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def test_cli_ingest_while_the_server_runs(tmp_path):
    kb = build_tiny_kb(tmp_path)
    files = tmp_path / "files"
    roadmap = files / "plans" / "roadmap.md"
    with running_server(create_app(kb, rate_limit_per_minute=0)) as url:
        assert search(url, "VPN server port")[0]["source"] == "public/vpn.md"  # indexes loaded
        # 1. a new document ingested by another process is found by the next search
        roadmap.parent.mkdir(parents=True)
        roadmap.write_text("# Roadmap\n\nThe Lunar office opens in March 2031 with forty desks.\n")
        cli("ingest", str(roadmap), "--kb", str(kb.path), "-q")
        hits = search(url, "When does the Lunar office open?")
        assert hits[0]["source"] == "plans/roadmap.md" and "2031" in hits[0]["text"]
        first = httpx.post(f"{url}/v1/ask", json={"question": "When does the Lunar office open?",
                                                   "answer_mode": "extractive"}, timeout=120).json()
        assert "2031" in first["text"]
        # 2. edited and re-ingested: found in its new version only (the answer cache is dropped too)
        roadmap.write_text("# Roadmap\n\nThe Lunar office opens in October 2035 with sixty desks.\n")
        cli("ingest", str(roadmap), "--kb", str(kb.path), "-q")
        texts = " ".join(h["text"] for h in search(url, "When does the Lunar office open?", k=10))
        assert "2035" in texts and "2031" not in texts
        again = httpx.post(f"{url}/v1/ask", json={"question": "When does the Lunar office open?",
                                                   "answer_mode": "extractive"}, timeout=120).json()
        assert "2035" in again["text"] and "2031" not in again["text"] and not again["cached"]
        # 3. a server upload after a CLI ingest writes indexes that hold both
        notes = files / "plans" / "canteen.md"
        notes.write_text("# Canteen\n\nThe canteen serves ramen on Fridays.\n")
        cli("ingest", str(notes), "--kb", str(kb.path), "-q")
        r = httpx.post(f"{url}/v1/documents", timeout=120,
                       files={"files": ("parking.txt", b"The parking garage closes at 11 pm on weekdays.\n")})
        assert r.status_code == 201, r.text
        assert search(url, "What does the canteen serve on Fridays?")[0]["source"] == "plans/canteen.md"
        assert search(url, "When does the parking garage close?")[0]["source"] == \
            "uploads/_public/parking.txt"
        health = httpx.get(f"{url}/healthz").json()
        assert health["reloads"] >= 3
    kb.close()
    report = verify_in_a_fresh_process(kb.path)
    assert report["ok"], report
    assert report["only_in_docstore"] == report["only_in_index"] == report["only_in_docstore_sparse"] == 0


def test_refresh_is_cheap_and_false_when_nothing_changed(tmp_path):
    kb = build_tiny_kb(tmp_path)
    kb.refresh()
    assert kb.refresh() is False
    before = kb.indexes
    assert kb.refresh() is False and kb.indexes is before
    kb.close()
