"""A server killed while an upload is placed and ingested: the journal it leaves lets the next start keep
what was committed and put back what was not (no unacknowledged file stays in uploads/, no old version
is lost); a journal of a process still running is left alone, and so are its kept-aside files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kb_assistant import KnowledgeBase
from kb_assistant.server.common import UPLOAD_DIR
from kb_assistant.server.uploads import STAGING_DIR, clean_staging, recover_uploads


@pytest.fixture
def kb(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb")
    folder = kb.path / UPLOAD_DIR / "hr"
    folder.mkdir(parents=True)
    (folder / "policy.txt").write_text("Annual leave is 25 days for every employee.", encoding="utf-8")
    (folder / "done.txt").write_text("The VPN server listens on port 1194.", encoding="utf-8")
    kb.ingest([str(folder / "policy.txt"), str(folder / "done.txt")], groups=["hr"], show_progress=False)
    (kb.path / UPLOAD_DIR / STAGING_DIR).mkdir()
    yield kb
    kb.close()


def _dirs(kb: KnowledgeBase) -> tuple[Path, Path]:
    """The owner folder of the fixture's uploads and the staging folder."""
    return kb.path / UPLOAD_DIR / "hr", kb.path / UPLOAD_DIR / STAGING_DIR


def _journal(kb: KnowledgeBase, placed: list[tuple[Path, Path | None]], pid: int) -> Path:
    path = _dirs(kb)[1] / f"{pid}-test.pending.json"
    path.write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "started": 0.0,
                                "placed": [[str(t), str(b) if b else None] for t, b in placed]}), "utf-8")
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recovery_restores_uncommitted_and_keeps_committed(kb):
    folder, staging = _dirs(kb)
    # 1. a new file placed, the server killed before its commit
    new = folder / "new.txt"
    new.write_text("Never acknowledged to its client.", encoding="utf-8")
    # 2. a replacement placed over policy.txt, killed before the commit: the old version was kept aside
    old_backup = staging / "aaaa.keep"
    os.link(folder / "policy.txt", old_backup)
    (folder / "policy.txt").unlink()
    (folder / "policy.txt").write_text("Annual leave is 99 days (an unfinished upload).", encoding="utf-8")
    # 3. a file whose ingest committed before the kill: it stays, its kept-aside copy goes
    done_backup = staging / "bbbb.keep"
    done_backup.write_text("an older version", encoding="utf-8")
    placed = [(new, None), (folder / "policy.txt", old_backup), (folder / "done.txt", done_backup)]
    journal = _journal(kb, placed, _dead_pid())

    assert recover_uploads(kb) == 1
    assert not new.exists()
    assert (folder / "policy.txt").read_text("utf-8") == "Annual leave is 25 days for every employee."
    assert (folder / "done.txt").read_text("utf-8") == "The VPN server listens on port 1194."
    assert not old_backup.exists() and not done_backup.exists() and not journal.exists()
    assert kb.verify()["ok"]
    assert recover_uploads(kb) == 0  # nothing left to do


def test_a_live_process_journal_and_its_files_are_left_alone(kb):
    folder, staging = _dirs(kb)
    new = folder / "in-flight.txt"
    new.write_text("Being ingested by another server process.", encoding="utf-8")
    backup = staging / "cccc.keep"
    backup.write_text("kept aside by that process", encoding="utf-8")
    os.utime(backup, (0, 0))  # old enough for clean_staging, but still referenced
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        journal = _journal(kb, [(new, None), (folder / "done.txt", backup)], live.pid)
        os.utime(journal, (0, 0))
        assert recover_uploads(kb) == 0
        clean_staging(kb)
        assert new.exists() and backup.exists() and journal.exists()
    finally:
        live.kill()
        live.wait()
    assert recover_uploads(kb) == 1  # the process died: now recovered
    assert not new.exists() and not backup.exists()


def test_unreadable_journal_is_reported_and_kept(kb, caplog):
    bad = _dirs(kb)[1] / "broken.pending.json"
    bad.write_text("{not json", encoding="utf-8")
    assert recover_uploads(kb) == 0
    assert bad.exists() and "unreadable upload journal" in caplog.text
