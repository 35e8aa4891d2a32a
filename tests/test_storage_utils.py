"""Atomic writes of files and folders: content, no temp file left, old version kept on failure, modes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from kb_assistant.storage_utils import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_text_json(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xffdata")
    atomic_write_text(tmp_path / "t.txt", "héllo 世界\n")
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": ["中文"]})
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xffdata"
    assert (tmp_path / "t.txt").read_bytes() == "héllo 世界\n".encode()
    raw = (tmp_path / "j.json").read_text(encoding="utf-8")
    assert json.loads(raw) == {"a": ["中文"], "b": 1}
    assert "中文" in raw and raw.index('"a"') < raw.index('"b"') and raw.endswith("}\n")  # sorted, readable
    assert _names(tmp_path) == ["b.bin", "j.json", "t.txt"]


def test_write_replaces_and_creates_parent_folders(tmp_path):
    target = tmp_path / "deep" / "er" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert _names(target.parent) == ["f.txt"]


def test_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def writer(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_with(target, writer)
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["f.txt"]
    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": object()})  # not serialisable: fails before anything is replaced
    assert target.read_text() == "old" and _names(tmp_path) == ["f.txt"]


def test_failure_without_an_old_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("partial")
        raise ValueError("stop")
    assert _names(tmp_path) == []


def test_atomic_write_with_a_writer_that_takes_a_file_name(tmp_path):
    target = tmp_path / "idx.bin"

    def writer(name: str) -> None:
        assert name != str(target) and os.path.dirname(name) == str(tmp_path)  # a temp beside it
        with open(name, "wb") as fh:
            fh.write(b"index")

    atomic_write_with(target, writer)
    assert target.read_bytes() == b"index" and _names(tmp_path) == ["idx.bin"]


def test_atomic_dir_creates_and_replaces_a_folder(tmp_path):
    target = tmp_path / "adapter"

    def fill(*files):
        def write(tmp):
            for name, text in files:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(text)
        return write

    atomic_dir(target, fill(("a.txt", "1"), ("sub/b.txt", "2")))
    assert (target / "sub" / "b.txt").read_text() == "2"
    atomic_dir(target, fill(("c.txt", "3")))
    assert _names(target) == ["c.txt"]  # the old folder's files are gone, not merged
    assert _names(tmp_path) == ["adapter"]  # no temp or .old folder left


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "weights").write_text("old")

    def write(tmp):
        (tmp / "weights").write_text("new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_dir(target, write)
    assert (target / "weights").read_text() == "old"
    assert _names(tmp_path) == ["ckpt"]


def test_atomic_dir_recovers_from_a_stale_old_folder(tmp_path):
    """A crash after the old folder was moved aside leaves ``.name.old``; the next save still works."""
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "v").write_text("2")
    stale = tmp_path / ".ckpt.old"
    stale.mkdir()
    (stale / "v").write_text("1")
    atomic_dir(target, lambda tmp: (tmp / "v").write_text("3"))
    assert (target / "v").read_text() == "3"
    assert _names(tmp_path) == ["ckpt"]


def test_new_files_and_folders_get_the_mode_of_a_plain_write(tmp_path):
    plain_file = tmp_path / "plain.txt"
    plain_file.write_text("x")
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    atomic_write_text(tmp_path / "atomic.txt", "x")
    atomic_dir(tmp_path / "folder", lambda tmp: (tmp / "f").write_text("x"))
    assert _mode(tmp_path / "atomic.txt") == _mode(plain_file)  # not mkstemp's 0600
    assert _mode(tmp_path / "folder") == _mode(plain_dir)  # not mkdtemp's 0700


def test_replacing_keeps_the_mode_of_the_existing_file(tmp_path):
    target = tmp_path / "config.toml"
    target.write_text("secret = 1")
    target.chmod(0o600)
    atomic_write_text(target, "secret = 2")
    assert _mode(target) == 0o600
    target.chmod(0o640)
    atomic_write_bytes(target, b"secret = 3")
    assert _mode(target) == 0o640
