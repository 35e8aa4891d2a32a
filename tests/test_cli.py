"""The `kb` command and scripts/ingest_folder.py, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def kb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "kb_assistant.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_cli_ingest_search_stats_delete(tmp_path, write):
    docs = tmp_path / "docs"
    write(docs / "vpn.md", "# VPN\n\nThe VPN server listens on port 1194.\n")
    write(docs / "hr.txt", "Annual leave is 25 days.")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    kb_dir = str(tmp_path / "kb")

    out = kb("ingest", str(docs), "--kb", kb_dir, "--json")
    assert out.returncode == 3, out.stderr  # partial: one file failed, the rest went in
    report = json.loads(out.stdout)
    assert len(report["added"]) == 2 and report["failed"][0]["path"].endswith("bad.pdf")

    out = kb("ingest", str(docs), "--kb", kb_dir, "--exclude", "*.pdf")
    assert out.returncode == 0, out.stderr
    assert "2 unchanged" in out.stdout

    out = kb("search", "vpn port", "--kb", kb_dir, "--json", "-k", "1")
    hits = json.loads(out.stdout)
    assert hits[0]["source"].endswith("vpn.md") and "1194" in hits[0]["text"]
    assert kb("search", "vpn port", "--kb", kb_dir).stdout.startswith("[1]")

    stats = json.loads(kb("stats", "--kb", kb_dir, "--json").stdout)
    assert stats["documents"] == 2 and stats["chunks"] == 2

    out = kb("delete", "vpn.md", "--kb", kb_dir)
    assert out.returncode == 0 and "1 chunks" in out.stdout
    assert json.loads(kb("stats", "--kb", kb_dir, "--json").stdout)["documents"] == 1
    out = kb("delete", "nope.md", "--kb", kb_dir)
    assert out.returncode == 1 and "no document matches" in out.stderr


def test_helper_script_matches_cli(tmp_path, write):
    docs = tmp_path / "docs"
    write(docs / "a.txt", "Printer on floor 3 is named NW-PRN-03.")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ingest_folder.py"), str(docs), "--kb",
                          str(tmp_path / "kb"), "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["added"]) == 1


def test_usage_errors():
    out = kb("ingest")
    assert out.returncode == 2
    out = kb("--version")
    assert out.returncode == 0 and "kb-assistant" in out.stdout
