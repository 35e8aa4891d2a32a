"""The `kb` command and scripts/ingest_folder.py, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_quiet_ingest_shows_no_progress_bar(tmp_path, write):
    write(tmp_path / "docs" / "a.txt", "The VPN server listens on port 1194.")
    out = kb("ingest", str(tmp_path / "docs"), "--kb", str(tmp_path / "kb"), "-q")
    assert out.returncode == 0, out.stderr
    assert "Loading weights" not in out.stderr and "it/s" not in out.stderr, out.stderr


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


# ---------------------------------------------------------------- #16 item 7: nothing created by accident
def _one_error_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["ask", "What is the VPN port?"], ["search", "vpn"], ["stats"],
                                     ["delete", "a.txt"], ["serve"], ["verify"], ["repair"], ["chat"],
                                     ["eval", "retrieval", "--qa", "qa.jsonl"],
                                     ["finetune", "prepare", "--out", "x.jsonl"]])
def test_commands_never_create_a_knowledge_base(tmp_path, command):
    missing = tmp_path / "no" / "such" / "dir"
    line = _one_error_line(kb(*command, "--kb", str(missing)))
    assert "does not exist: create it with `kb init`" in line
    assert not (tmp_path / "no").exists()
    folder = tmp_path / "folder"
    folder.mkdir(exist_ok=True)
    line = _one_error_line(kb(*command, "--kb", str(folder)))
    assert "is not a knowledge base (no docstore.sqlite3)" in line and not any(folder.iterdir())
    (tmp_path / "file.txt").write_text("x")
    line = _one_error_line(kb(*command, "--kb", str(tmp_path / "file.txt")))
    assert "is a file, not a knowledge base" in line


def test_init_creates_and_ingest_creates(tmp_path, write):
    out = kb("init", "--kb", str(tmp_path / "kb"))
    assert out.returncode == 0 and "created the knowledge base" in out.stdout
    assert (tmp_path / "kb" / "docstore.sqlite3").exists()
    assert "is already a knowledge base" in _one_error_line(kb("init", "--kb", str(tmp_path / "kb")))
    write(tmp_path / "docs" / "a.txt", "The canteen opens at 11:30.")
    assert kb("ingest", str(tmp_path / "docs"), "--kb", str(tmp_path / "other"), "-q").returncode == 0


def test_bad_config_and_arguments_are_one_line(tmp_path, write):
    kb_dir = tmp_path / "kb"
    assert kb("init", "--kb", str(kb_dir)).returncode == 0
    cfg = kb_dir / "config.toml"
    good = cfg.read_bytes()
    cfg.write_bytes("[query]\nk = 5 # caf\xe9\n".encode("latin-1"))
    assert "invalid TOML: not UTF-8 text" in _one_error_line(kb("stats", "--kb", str(kb_dir)))
    cfg.write_bytes(good + b'\n[embedding]\ndevice = "cuda"\n' if b"[embedding]" not in good else
                    good.replace(b'device = "auto"', b'device = "cuda"'))
    import torch

    if not torch.cuda.is_available():
        line = _one_error_line(kb("search", "vpn", "--kb", str(kb_dir)))
        assert "device 'cuda' is not available on this machine" in line
    cfg.write_bytes(good)
    (kb_dir / "manifest.json").write_text("{not json")
    assert "unreadable manifest" in _one_error_line(kb("stats", "--kb", str(kb_dir)))
    (kb_dir / "manifest.json").unlink()
    for args in (["search", "vpn", "-k", "-5"], ["search", "vpn", "-k", "x"], ["ask", "q", "--top-p", "2"],
                 ["serve", "--port", "70000"]):
        out = kb(*args, "--kb", str(kb_dir))
        assert out.returncode == 2 and "error: argument" in out.stderr and "Traceback" not in out.stderr


def test_control_characters_never_reach_the_terminal(tmp_path, write):
    docs = tmp_path / "docs"
    evil = "report\x1b]0;owned\x07\x1b[2J\u202etxt.exe\r.txt"
    (docs).mkdir()
    (docs / evil).write_bytes(bytes(range(256)) * 8)  # binary: fails, and its name is printed
    write(docs / "ok.txt", "The canteen opens at 11:30.")
    for extra in ([], ["--json"]):
        out = kb("ingest", str(docs), "--kb", str(tmp_path / "kb"), "-q", *extra)
        assert out.returncode == 3, out.stderr
        shown = out.stdout + out.stderr
        assert not any(ch in shown for ch in "\x1b\x07\r\u202e"), repr(shown)
        assert "\\x1b]0;owned\\x07" in shown or "\\u001b]0;owned\\u0007" in shown


def test_verify_and_repair_commands(tmp_path, write):
    write(tmp_path / "docs" / "a.txt", "The VPN server listens on port 1194.")
    kb_dir = tmp_path / "kb"
    assert kb("ingest", str(tmp_path / "docs"), "--kb", str(kb_dir), "-q").returncode == 0
    out = kb("verify", "--kb", str(kb_dir))
    assert out.returncode == 0 and "consistent (1 chunks)" in out.stdout
    (kb_dir / "dense.faiss").write_bytes(b"garbage")
    out = kb("verify", "--kb", str(kb_dir), "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["dense_file"].startswith("unreadable")
    out = kb("repair", "--kb", str(kb_dir))
    assert out.returncode == 0
    assert "rebuilt from the docstore (1 vectors, 1 BM25 rows); consistent" in out.stdout
    assert kb("verify", "--kb", str(kb_dir)).returncode == 0
