"""Folder walker: deterministic, never raises for one bad file, survives symlink loops.

Every problem (unreadable file or folder, file vanished mid-walk, too large, broken link, a symlink
leading out of the walked folder, a FIFO or device) comes back as a :class:`WalkEntry` with ``error``
set, so an ingest can report it and carry on. Symlinks inside a walked folder are followed only while
they stay inside it; a path named explicitly is always followed.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kb_assistant.loaders.base import DEFAULT_MAX_BYTES, size_limit_message
from kb_assistant.loaders.registry import SUFFIXES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalkEntry:
    """One file found by :func:`walk`; ``error`` is a one-line reason when it cannot be loaded."""

    path: Path
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _match(patterns: list[str], rel: str, name: str) -> bool:
    for pattern in patterns:
        variants = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        for p in variants:
            if fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p):
                return True
    return False


def walk(
    paths: str | Path | Iterable[str | Path],
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[WalkEntry]:
    """Yield the files under ``paths`` in sorted order.

    Without ``include``, only files with a supported suffix are yielded from folders; files named
    explicitly are always yielded (so an unsupported one is reported by the loader). ``include`` and
    ``exclude`` are fnmatch globs tried on the path relative to the walked folder (posix) and on the
    file name; ``exclude`` also prunes folders. Hidden files and folders (``.name``) are skipped.
    """
    roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    state = _WalkState(include or [], exclude or [], max_bytes)
    for root in roots:
        yield from state.walk_root(Path(root))


def special_kind(mode: int) -> str:
    """What a non-regular, non-folder file is, for the reason: "a named pipe", "a character device"..."""
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def _inside(path: Path, root_real: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


class _WalkState:
    def __init__(self, include: list[str], exclude: list[str], max_bytes: int) -> None:
        self.include = include
        self.exclude = exclude
        self.max_bytes = max_bytes
        self.seen_dirs: set[str] = set()
        self.seen_files: set[str] = set()
        self.root_real = ""

    def walk_root(self, root: Path) -> Iterator[WalkEntry]:
        try:
            st = root.stat()
        except FileNotFoundError:
            kind = "broken symlink" if root.is_symlink() else "no such file or directory"
            yield WalkEntry(root, kind)
            return
        except OSError as exc:
            yield WalkEntry(root, f"cannot access: {exc.strerror or exc}")
            return
        if stat.S_ISDIR(st.st_mode):
            self.root_real = os.path.realpath(root)
            yield from self._walk_dir(root, root)
        else:
            entry = self._file_entry(root)
            if entry is not None:
                yield entry

    def _walk_dir(self, directory: Path, root: Path) -> Iterator[WalkEntry]:
        real = os.path.realpath(directory)
        if real in self.seen_dirs:
            logger.info("skipping %s: symlink loop or folder already walked", directory)
            return
        self.seen_dirs.add(real)
        try:
            with os.scandir(directory) as it:
                names = sorted(e.name for e in it)
        except PermissionError:
            yield WalkEntry(directory, "permission denied: cannot list folder")
            return
        except FileNotFoundError:
            yield WalkEntry(directory, "folder vanished during the walk")
            return
        except OSError as exc:
            yield WalkEntry(directory, f"cannot list folder: {exc.strerror or exc}")
            return
        for name in names:
            if name.startswith("."):
                continue
            path = directory / name
            rel = path.relative_to(root).as_posix()
            if self.exclude and _match(self.exclude, rel, name):
                continue
            try:
                st = path.stat()  # follows symlinks
            except FileNotFoundError:
                if path.is_symlink():
                    yield WalkEntry(path, "broken symlink")
                else:
                    yield WalkEntry(path, "file vanished during the walk")
                continue
            except OSError as exc:
                if exc.errno == 40:  # ELOOP: a symlink pointing at itself
                    logger.info("skipping %s: symlink loop", path)
                    continue
                yield WalkEntry(path, f"cannot access: {exc.strerror or exc}")
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if path.is_symlink() and not _inside(path, self.root_real):
                if is_dir or self._wanted(path, rel, name):
                    yield WalkEntry(path, "symlink to a path outside the ingested folder: not followed")
                continue
            if is_dir:
                yield from self._walk_dir(path, root)
            elif not self._wanted(path, rel, name):
                continue
            elif stat.S_ISREG(st.st_mode):
                entry = self._file_entry(path)
                if entry is not None:
                    yield entry
            else:
                yield WalkEntry(path, f"not a regular file ({special_kind(st.st_mode)}): skipped")

    def _wanted(self, path: Path, rel: str, name: str) -> bool:
        """Whether a file of this name would be ingested (``include`` globs, else a supported suffix)."""
        if self.include:
            return _match(self.include, rel, name)
        return path.suffix.lower() in SUFFIXES

    def _file_entry(self, path: Path) -> WalkEntry | None:
        """Stat and check one file right before yielding it (late, so vanished files are caught)."""
        real = os.path.realpath(path)
        if real in self.seen_files:
            return None
        self.seen_files.add(real)
        try:
            st = path.stat()
        except FileNotFoundError:
            return WalkEntry(path, "file vanished during the walk")
        except OSError as exc:
            return WalkEntry(path, f"cannot access: {exc.strerror or exc}")
        if not stat.S_ISREG(st.st_mode):
            return WalkEntry(path, f"not a regular file ({special_kind(st.st_mode)}): skipped")
        if st.st_size > self.max_bytes:
            return WalkEntry(path, size_limit_message(st.st_size, self.max_bytes))
        if not os.access(path, os.R_OK):
            return WalkEntry(path, "permission denied: cannot read the file")
        return WalkEntry(path)
