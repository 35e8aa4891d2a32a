"""Reading JSONL files whose lines are validated one by one (QA sets, training data)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from .errors import ConfigError

T = TypeVar("T")


def json_lines(lines: Iterable[str], name: str, errors: list[str]) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of each non-blank JSON line; a line that is not JSON goes to ``errors``
    as '<name>: line N: invalid JSON (...)' and is skipped."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{name}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})")


def load_jsonl_checked(path: str | os.PathLike[str], parse: Callable[..., tuple[list[T], list[str]]], *,
                       label: str, noun: str) -> list[T]:
    """Read ``path`` and parse its lines with ``parse(lines, name=...) -> (records, errors)``.

    Raises ConfigError with the first error ('<file>: line 12: ...' and how many more), or when the
    file is missing ("<label> file not found"), not UTF-8 or holds no records ("no <noun> found").
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label} file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {label} file ({exc.strerror or exc})") from None
    try:
        records, errors = parse(text.splitlines(), name=str(path))
    except (ValueError, RecursionError) as exc:  # what json cannot hold: a 5,000-digit number, deep nesting
        raise ConfigError(f"{path}: unreadable JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more)
    if not records:
        raise ConfigError(f"{path}: no {noun} found")
    return records
