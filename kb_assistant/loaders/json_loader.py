"""JSON / JSONL loader: records flattened to readable ``key: value`` lines, one Document per record."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kb_assistant.errors import CorruptFile
from kb_assistant.loaders.base import finish, format_cell, make_document
from kb_assistant.loaders.encoding import decode_bytes
from kb_assistant.loaders.limits import DEFAULT_LIMITS, ParseLimits
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

MAX_DEPTH = 30


def load_json(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    text, _ = decode_bytes(path.read_bytes(), path.suffix.lower() or ".json")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if _first_line_is_record(text):
            try:  # a .json file that is really JSON Lines
                return _records(_parse_lines(text, path), path)
            except CorruptFile:
                pass
        raise CorruptFile(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise CorruptFile("not valid JSON (nested too deeply)") from None
    items = data if isinstance(data, list) else [data]
    return _records(items, path)


def load_jsonl(path: Path, *, limits: ParseLimits = DEFAULT_LIMITS) -> list[Document]:
    text, _ = decode_bytes(path.read_bytes(), path.suffix.lower() or ".jsonl")
    return _records(_parse_lines(text, path), path)


def _first_line_is_record(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        return isinstance(json.loads(lines[0]), (dict, list))
    except (json.JSONDecodeError, RecursionError):
        return False


def _parse_lines(text: str, path: Path) -> list[Any]:
    items: list[Any] = []
    bad = 0
    first_error = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as exc:
            bad += 1
            first_error = first_error or f"line {number}: {getattr(exc, 'msg', 'nested too deeply')}"
    if bad and not items:
        raise CorruptFile(f"not valid JSON Lines ({first_error})")
    if bad:
        logger.warning("%s: skipped %d invalid JSON lines (first at %s)", path.name, bad, first_error)
    return items


def _records(items: list[Any], path: Path) -> list[Document]:
    docs = [
        make_document("\n".join(flatten(item)), "json", record=number)
        for number, item in enumerate(items, start=1)
    ]
    return finish(docs, "JSON file has no values")


def flatten(value: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """``{"user": {"name": "Al"}, "tags": ["a", "b"]}`` -> ``["user.name: Al", "tags: a, b"]``."""
    if depth > MAX_DEPTH:
        return [f"{prefix}: …" if prefix else "…"]
    if isinstance(value, dict):
        lines: list[str] = []
        for key, child in value.items():
            lines.extend(flatten(child, f"{prefix}.{key}" if prefix else str(key), depth + 1))
        return lines
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            joined = ", ".join(format_cell(v) for v in value if format_cell(v))
            return [f"{prefix}: {joined}" if prefix else joined] if joined else []
        lines = []
        for i, child in enumerate(value):
            lines.extend(flatten(child, f"{prefix}[{i}]" if prefix else f"[{i}]", depth + 1))
        return lines
    cell = format_cell(value)
    if not cell:
        return []
    return [f"{prefix}: {cell}" if prefix else cell]
