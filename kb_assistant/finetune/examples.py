"""Training examples: the chat format, JSONL validation with line-numbered errors, atomic saving.

A training example is a chat: ``{"messages": [system, user, assistant], "meta": {...}}``. Users may
also write ``{"prompt": ..., "response": ...}`` lines.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonl import json_lines, load_jsonl_checked
from ..storage_utils import atomic_write_text

ROLES = ("system", "user", "assistant")


@dataclass
class TrainExample:
    """One chat; the last message (the assistant's) is the training target."""

    messages: list[dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        return self.messages[:-1]

    @property
    def response(self) -> str:
        return self.messages[-1]["content"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": self.messages}
        if self.meta:
            out["meta"] = self.meta
        return out


# ------------------------------------------------------------------ validation
def _check_messages(msgs: Any) -> list[str]:
    if not isinstance(msgs, list) or len(msgs) < 2:
        return ["'messages' must be a list of at least 2 {role, content} objects"]
    errors: list[str] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            errors.append(f"messages[{i}] must be an object with 'role' and 'content'")
            continue
        if m.get("role") not in ROLES:
            errors.append(f"messages[{i}].role must be one of {', '.join(ROLES)} (got {m.get('role')!r})")
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            errors.append(f"messages[{i}].content must be a non-empty string")
    if errors:
        return errors
    if msgs[-1]["role"] != "assistant":
        errors.append("the last message must have role 'assistant' (it is the training target)")
    if not any(m["role"] == "user" for m in msgs):
        errors.append("'messages' needs at least one 'user' message")
    return errors


def validate_record(data: Any) -> list[str]:
    """Every problem of one parsed JSONL record (empty list: valid)."""
    if not isinstance(data, dict):
        return [f"expected a JSON object, got {type(data).__name__}"]
    has_pair = "prompt" in data or "response" in data
    if has_pair and "messages" in data:
        return ["use either 'prompt'/'response' or 'messages', not both"]
    if "meta" in data and not isinstance(data["meta"], dict):
        return ["'meta' must be an object"]
    if "messages" in data:
        return _check_messages(data["messages"])
    if not has_pair:
        return ["expected keys 'prompt' and 'response' (or a chat-style 'messages' list)"]
    errors = []
    for key in ("prompt", "response"):
        if key not in data:
            errors.append(f"missing {key!r}")
        elif not isinstance(data[key], str) or not data[key].strip():
            errors.append(f"{key!r} must be a non-empty string")
    return errors


def record_to_example(data: dict[str, Any]) -> TrainExample:
    if "messages" in data:
        msgs = [{"role": m["role"], "content": m["content"]} for m in data["messages"]]
    else:
        msgs = [{"role": "user", "content": data["prompt"]},
                {"role": "assistant", "content": data["response"]}]
    return TrainExample(msgs, dict(data.get("meta") or {}))


def parse_lines(lines: Iterable[str], name: str = "<data>") -> tuple[list[TrainExample], list[str]]:
    """Parse JSONL lines; returns (valid examples, every error as '<name>: line N: message')."""
    examples: list[TrainExample] = []
    errors: list[str] = []
    for lineno, data in json_lines(lines, name, errors):
        problems = validate_record(data)
        if problems:
            errors.extend(f"{name}: line {lineno}: {p}" for p in problems)
            continue
        examples.append(record_to_example(data))
    return examples, errors


def load_examples(path: str | os.PathLike[str]) -> list[TrainExample]:
    """Load and validate a training JSONL file; raises ConfigError naming the line and the problem."""
    return load_jsonl_checked(path, parse_lines, label="training data", noun="training examples")


def save_examples(path: str | os.PathLike[str], examples: Sequence[TrainExample]) -> Path:
    """Write examples as JSONL atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n" for ex in examples))
    return path


def data_hash(examples: Sequence[TrainExample]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.messages, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return h.hexdigest()[:16]
