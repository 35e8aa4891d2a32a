"""Folder walker: order, globs, hidden files, symlink loops, vanished/unreadable files, size limits."""

from __future__ import annotations

import os
from pathlib import Path

import fixtures_files as F
import pytest

from kb_assistant.loaders import WalkEntry, load_file, walk


def _tree(root: Path) -> Path:
    (root / "docs" / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.md").write_text("# B\n\nbee")
    (root / "a.txt").write_text("aye")
    (root / "docs" / "guide.md").write_text("guide")
    (root / "docs" / "sub" / "deep.txt").write_text("deep")
    (root / "docs" / "tmp.log").write_text("log")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / ".hidden.txt").write_text("secret")
    (root / ".git" / "config.txt").write_text("git")
    return root


def _rel(entries: list[WalkEntry], root: Path) -> list[str]:
    return [e.path.relative_to(root).as_posix() for e in entries]


def test_sorted_supported_and_hidden_skipped(tmp_path):
    root = _tree(tmp_path)
    entries = list(walk(root))
    assert _rel(entries, root) == ["a.txt", "b.md", "docs/guide.md", "docs/sub/deep.txt", "docs/tmp.log"]
    assert all(e.ok and e.error is None for e in entries)
    assert list(walk(str(root))) == entries  # str and Path, deterministic


def test_include_exclude_globs(tmp_path):
    root = _tree(tmp_path)
    assert _rel(list(walk(root, include=["*.md"])), root) == ["b.md", "docs/guide.md"]
    assert _rel(list(walk(root, include=["docs/*"])), root) == [
        "docs/guide.md", "docs/sub/deep.txt", "docs/tmp.log"]
    assert _rel(list(walk(root, exclude=["docs"])), root) == ["a.txt", "b.md"]
    assert _rel(list(walk(root, exclude=["*.log", "**/deep.txt"])), root) == [
        "a.txt", "b.md", "docs/guide.md"]
    assert _rel(list(walk(root, include=["*.png"])), root) == ["image.png"]


def test_several_roots_and_explicit_files(tmp_path):
    root = _tree(tmp_path)
    entries = list(walk([root / "docs" / "sub", root / "image.png", root / "missing.pdf"]))
    assert [e.path.name for e in entries] == ["deep.txt", "image.png", "missing.pdf"]
    assert entries[1].ok  # named explicitly: the loader will report the unsupported type
    assert entries[2].error == "no such file or directory"


def test_symlink_loop(tmp_path):
    root = _tree(tmp_path)
    os.symlink(root, root / "docs" / "loop")
    os.symlink(root / "docs" / "self", root / "docs" / "self")  # a link pointing at itself
    entries = list(walk(root))
    assert _rel(entries, root) == ["a.txt", "b.md", "docs/guide.md", "docs/sub/deep.txt", "docs/tmp.log"]


def test_symlinked_folder_and_broken_link(tmp_path):
    root = tmp_path / "kb"
    root.mkdir()
    other = F.make_text(tmp_path / "outside.txt", "outside").parent
    os.symlink(other, root / "linked", target_is_directory=True)
    os.symlink(tmp_path / "gone.txt", root / "broken.txt")
    entries = list(walk(root))
    by_name = {e.path.name: e for e in entries}
    assert "outside.txt" not in by_name  # the linked folder leads out of the tree: not followed
    assert by_name["linked"].error == OUTSIDE
    assert by_name["broken.txt"].error == "broken symlink"


OUTSIDE = "symlink to a path outside the ingested folder: not followed"


def test_symlinks_never_lead_out_of_the_tree(tmp_path):
    (tmp_path / "secret").mkdir()
    secret = F.make_text(tmp_path / "secret" / "passwords.txt", "root password: hunter2")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    F.make_text(root / "a.txt", "aye")
    os.symlink(secret, root / "leak.txt")
    os.symlink(secret.parent, root / "sub" / "leakdir", target_is_directory=True)
    os.symlink("/dev/zero", root / "zero.txt")
    os.symlink("/etc/hostname", root / "image.png")  # not a supported suffix: silently skipped
    os.symlink(root / "a.txt", root / "sub" / "alias.txt")  # stays inside: followed (once)
    os.symlink(root / "sub", root / "subalias", target_is_directory=True)
    entries = {e.path.relative_to(root).as_posix(): e.error for e in walk(root)}
    assert entries == {"a.txt": None, "leak.txt": OUTSIDE, "sub/leakdir": OUTSIDE, "zero.txt": OUTSIDE}
    # named explicitly, a link is the user's choice and is followed
    assert [e.error for e in walk(root / "leak.txt")] == [None]
    # walking through a symlinked root compares with where it really is
    os.symlink(root, tmp_path / "docs_link", target_is_directory=True)
    assert {e.path.name: e.error for e in walk(tmp_path / "docs_link")}["a.txt"] is None


def test_fifos_and_devices_are_reported_not_opened(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    os.mkfifo(root / "pipe.txt")  # opening it would block forever
    os.mkfifo(root / "pipe_without_suffix")
    F.make_text(root / "b.txt", "bee")
    entries = {e.path.name: e.error for e in walk(root)}
    assert entries == {"pipe.txt": "not a regular file (a named pipe): skipped", "b.txt": None}
    assert [e.error for e in walk(root / "pipe.txt")] == ["not a regular file (a named pipe): skipped"]
    assert [e.error for e in walk("/dev/null")] == ["not a regular file (a character device): skipped"]


def test_file_deleted_during_walk(tmp_path):
    for name in ("1.txt", "2.txt", "3.txt"):
        (tmp_path / name).write_text(name)
    gen = walk(tmp_path)
    first = next(gen)
    assert first.path.name == "1.txt" and first.ok
    (tmp_path / "2.txt").unlink()
    rest = list(gen)
    assert [(e.path.name, e.error) for e in rest] == [
        ("2.txt", "file vanished during the walk"), ("3.txt", None)]


def test_size_limit_reported(tmp_path):
    F.make_big_file(tmp_path / "big.txt", int(62.1 * 2**20))
    (tmp_path / "small.txt").write_text("ok")
    entries = list(walk(tmp_path))
    assert entries[0].error == "file larger than the 50 MB limit (62.1 MB)"
    assert entries[1].ok
    assert list(walk(tmp_path, max_bytes=1))[1].error.startswith("file larger than")


def test_unreadable_directory_reported(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    entries = list(walk(root))
    bad = [e for e in entries if not e.ok]
    assert [(e.path.name, e.error) for e in bad] == [("sub", "permission denied: cannot list folder")]
    assert "docs/tmp.log" in _rel(entries, root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_reported(tmp_path):
    path = tmp_path / "locked.txt"
    path.write_text("secret")
    path.chmod(0)
    try:
        entries = list(walk(tmp_path))
        assert entries[0].error == "permission denied: cannot read the file"
    finally:
        path.chmod(0o644)


def test_paths_with_spaces_and_chinese(tmp_path):
    folder = tmp_path / "知识库 2024" / "人事 政策"
    folder.mkdir(parents=True)
    F.make_gbk_txt(folder / "年假 规定.txt")
    F.make_pdf(folder / "IT handbook v2.pdf", ["VPN port 1194"])
    entries = list(walk(tmp_path))
    assert [e.path.name for e in entries] == ["IT handbook v2.pdf", "年假 规定.txt"]
    assert all(e.ok for e in entries)
    assert "年假" in load_file(entries[1].path)[0].text
