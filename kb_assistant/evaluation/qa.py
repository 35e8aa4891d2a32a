"""QA evaluation sets: one JSON object per line, validated with line-numbered errors.

Answerable record::

    {"id": "en-001", "question": "...", "lang": "en", "source": "en-US/sect.apt-get.html",
     "evidence": "verbatim snippet of the source page", "answer_keywords": ["apt"],
     "answer": "one-sentence reference answer", "answerable": true, "kind": "en"}

Unanswerable record::

    {"id": "un-001", "question": "...", "lang": "zh", "answerable": false, "kind": "unanswerable"}

Optional keys: ``page`` (1-based int, for paged sources), ``split`` (``"tune"`` or ``"test"``: the
frozen half a figure is chosen on, or reported on), ``answer_keywords_zh`` (Chinese keywords of an
English question answered from Chinese text), ``absent_terms`` (strings checked to be absent from the
corpus, for unanswerable items). Unknown keys are kept in ``QAItem.extra``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kb_assistant.errors import ConfigError
from kb_assistant.jsonl import json_lines, load_jsonl_checked

logger = logging.getLogger(__name__)

LANGS = ("en", "zh")
KINDS = ("en", "zh", "cross", "unanswerable")
#: defaults are chosen on the tune split and reported on the test split
SPLITS = ("tune", "test")
_KNOWN_KEYS = {
    "id",
    "question",
    "lang",
    "answerable",
    "kind",
    "source",
    "evidence",
    "answer_keywords",
    "answer",
    "page",
    "split",
    "answer_keywords_zh",
    "absent_terms",
}


@dataclass
class QAItem:
    """One evaluation question; ``source``/``evidence`` are set for answerable items only."""

    id: str
    question: str
    lang: str
    answerable: bool
    kind: str
    source: str | None = None
    evidence: str | None = None
    answer_keywords: list[str] = field(default_factory=list)
    answer: str | None = None
    page: int | None = None
    split: str | None = None
    answer_keywords_zh: list[str] = field(default_factory=list)
    absent_terms: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        errors = validate_record(self.to_dict())
        if errors:
            raise ConfigError(f"QA item {self.id!r}: {errors[0]}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QAItem:
        """Build an item from a parsed JSON object; raises ConfigError naming the first problem."""
        errors = validate_record(data)
        if errors:
            raise ConfigError(errors[0])
        known = {k: v for k, v in data.items() if k in _KNOWN_KEYS}
        extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
        known.setdefault("answer_keywords", [])
        known.setdefault("answer_keywords_zh", [])
        known.setdefault("absent_terms", [])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as written in the .jsonl file (None/empty optional keys omitted)."""
        d = asdict(self)
        extra = d.pop("extra")
        out = {k: v for k, v in d.items() if v is not None and v != []}
        out.update(extra)
        return out


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_str(v) for v in value)


def with_defaults(data: dict[str, Any], lineno: int) -> dict[str, Any]:
    """Fill the optional keys: ``answerable`` (true), ``id`` (q<line>), ``lang`` (from the question's
    script), ``kind`` (the language, or "unanswerable")."""
    data = dict(data)
    data.setdefault("answerable", True)
    data.setdefault("id", f"q{lineno:04d}")
    if "lang" not in data and isinstance(data.get("question"), str):
        cjk = sum(1 for ch in data["question"] if "\u3400" <= ch <= "\u9fff")
        data["lang"] = "zh" if cjk * 5 > len(data["question"]) else "en"
    if "kind" not in data and isinstance(data.get("answerable"), bool):
        data["kind"] = "unanswerable" if not data["answerable"] else data.get("lang")
    return data


def validate_record(data: Any) -> list[str]:
    """Return every schema problem of one parsed record (empty list when valid)."""
    if not isinstance(data, dict):
        return [f"expected a JSON object, got {type(data).__name__}"]
    errors: list[str] = []
    for key in ("id", "question", "lang", "kind"):
        if key not in data:
            errors.append(f"missing {key!r}")
        elif not _is_str(data[key]):
            errors.append(f"{key!r} must be a non-empty string")
    if "answerable" not in data:
        errors.append("missing 'answerable'")
    elif not isinstance(data["answerable"], bool):
        errors.append("'answerable' must be true or false")
    lang, kind, answerable = data.get("lang"), data.get("kind"), data.get("answerable")
    if _is_str(lang) and lang not in LANGS:
        errors.append(f"'lang' must be one of {', '.join(LANGS)} (got {lang!r})")
    if _is_str(kind) and kind not in KINDS:
        errors.append(f"'kind' must be one of {', '.join(KINDS)} (got {kind!r})")
    if isinstance(answerable, bool) and kind in KINDS and answerable != (kind != "unanswerable"):
        errors.append(f"'answerable' is {str(answerable).lower()} but kind is {kind!r}")
    if answerable is True:
        if "source" not in data:
            errors.append("missing 'source' (required when answerable)")
        elif not _is_str(data["source"]):
            errors.append("'source' must be a non-empty string")
        if "evidence" not in data and data.get("page") is None:
            errors.append("missing 'evidence' (required when answerable, unless 'page' is given)")
        elif "evidence" in data and not _is_str(data["evidence"]):
            errors.append("'evidence' must be a non-empty string")
    for key in ("answer_keywords", "answer_keywords_zh", "absent_terms"):
        if key in data and not _is_str_list(data[key]):
            errors.append(f"{key!r} must be a list of non-empty strings")
    split = data.get("split")
    if split is not None and split not in SPLITS:
        errors.append(f"'split' must be one of {', '.join(SPLITS)} (got {split!r})")
    if data.get("answer") is not None and not _is_str(data["answer"]):
        errors.append("'answer' must be a non-empty string")
    page = data.get("page")
    if page is not None and (isinstance(page, bool) or not isinstance(page, int) or page < 1):
        errors.append("'page' must be a positive integer (1-based)")
    return errors


def parse_qa_lines(lines: list[str], name: str = "<qa>") -> tuple[list[QAItem], list[str]]:
    """Parse JSONL lines; returns (valid items, every error as '<name>: line N: message')."""
    items: list[QAItem] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for lineno, data in json_lines(lines, name, errors):
        if isinstance(data, dict):
            data = with_defaults(data, lineno)
        problems = validate_record(data)
        if problems:
            errors.extend(f"{name}: line {lineno}: {p}" for p in problems)
            continue
        if data["id"] in seen:
            first = seen[data["id"]]
            errors.append(f"{name}: line {lineno}: duplicate id {data['id']!r} (first on line {first})")
            continue
        seen[data["id"]] = lineno
        items.append(QAItem.from_dict(data))
    return items, errors


def load_qa(path: str | Path, split: str | None = None) -> list[QAItem]:
    """Load and validate a QA .jsonl file; raises ConfigError ('<file>: line 12: missing 'question'').

    ``split`` ("tune" or "test") keeps only the items of that split; a file without such items is an
    error rather than an empty evaluation.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
    items = load_jsonl_checked(path, parse_qa_lines, label="QA", noun="QA items")
    if split is not None:
        kept = [item for item in items if item.split == split]
        if not kept:
            raise ConfigError(f"{path}: no QA items with split {split!r} (of {len(items)})")
        items = kept
    logger.info("loaded %d QA items from %s%s", len(items), path, f" (split {split})" if split else "")
    return items
