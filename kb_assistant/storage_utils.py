"""Atomic writes, the one implementation: a temp file (or folder) in the same directory, fsync,
``os.replace``, fsync of the directory. A crash at any moment leaves the old or the new version."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it, which is not thread-safe


def _mode_for(target: Path, default: int) -> int:
    """The existing target's permission bits, else what a plain open()/mkdir() would give."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return default & ~_UMASK


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _mode_for(target, 0o666))  # not mkstemp's 0600
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: Path, obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def atomic_write_with(target: Path, writer: Callable[[str], None]) -> None:
    """Atomically produce ``target`` with a writer that takes a file name (e.g. faiss.write_index)."""
    with atomic_path(target) as tmp:
        writer(str(tmp))


def atomic_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Produce the folder ``target`` atomically: ``write`` fills a temp folder beside it, which then
    replaces ``target`` (an existing one is moved aside first and removed after)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(target, 0o777))  # not mkdtemp's 0700
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)  # left by a crash: os.replace cannot move onto it
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(directory: Path, older_than_s: float = 600.0) -> int:
    """Delete the temp files of :func:`atomic_path` that a killed process left in ``directory`` (not
    touched for ``older_than_s``: a write in progress keeps its file fresh); returns how many. Call it
    while holding the lock that writers of those files take."""
    import time

    cutoff = time.time() - older_than_s
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False) and _TEMP_NAME.match(entry.name):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
    return removed


#: ``atomic_path``'s temp names: ``.<target>.<mkstemp's 8 characters>.tmp``
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embed_hash(text: str) -> str:
    """Key of an embedded text: equal texts share one stored vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
