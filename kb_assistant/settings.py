"""Typed, validated settings dataclasses: declare a field's range or choices once, in its metadata.

    @dataclass
    class QueryConfig(Settings):
        k: int = setting(5, lo=1, hi=100, doc="hits retrieved per question")

One validator (:meth:`Settings.validate`, run by ``__post_init__``) checks every field's type, range and
choices; one :meth:`Settings.from_dict` rejects unknown keys naming the allowed ones; the generated
configuration reference (``scripts/gen_config_docs.py``) reads the same metadata. A bound may be a
callable of the instance (``hi=lambda s: s.chunk_tokens // 2``) with ``hi_doc`` describing it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound="Settings")
Bound = float | Callable[[Any], float] | None


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, lo: Bound = None,
            hi: Bound = None, choices: tuple[Any, ...] | None = None, doc: str = "",
            lo_doc: str | None = None, hi_doc: str | None = None) -> Any:
    """A dataclass field with its validation rules and description in the metadata."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc, "lo_doc": lo_doc, "hi_doc": hi_doc}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _fmt(value: Any) -> str:
    return repr(value)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the resolved type hint: int/float/str/bool, ``X | None``, list/dict of those."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        k_hint, v_hint = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(_type_ok(k, k_hint) and _type_ok(v, v_hint)
                                               for k, v in value.items())
    return True


def _type_name(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("NoneType", "None")
    return text.removeprefix("<class '").removesuffix("'>")


class Settings:
    """Base of every settings dataclass (subclasses are ``@dataclass`` and call nothing themselves)."""

    #: the config.toml section this class reads, for messages (None: not a config.toml section)
    SECTION: typing.ClassVar[str | None] = None

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        cache = cls.__dict__.get("_hint_cache")
        if cache is None:
            cache = typing.get_type_hints(cls)
            cls._hint_cache = cache  # type: ignore[attr-defined]
        return cache

    def _where(self, name: str) -> str:
        return f"{type(self).__name__}.{name}"

    def validate(self) -> None:
        """Check every field against its declared type, choices and range; raise ConfigError."""
        hints = self._hints()
        for f in fields(self):  # type: ignore[arg-type]
            if not f.init:
                continue
            value = getattr(self, f.name)
            hint = hints.get(f.name, Any)
            if not _type_ok(value, hint):
                raise ConfigError(f"{self._where(f.name)} must be {_type_name(hint)}; got {value!r}")
            if value is None:
                continue
            meta = f.metadata
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{self._where(f.name)} must be one of {', '.join(map(_fmt, choices))}; "
                                  f"got {value!r}")
            lo, hi = meta.get("lo"), meta.get("hi")
            lo = lo(self) if callable(lo) else lo
            hi = hi(self) if callable(hi) else hi
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
                raise ConfigError(f"{self._where(f.name)} must be in {bounds}; got {value!r}")
        self.check()

    def check(self) -> None:
        """Cross-field rules of a subclass (the per-field rules are declared in metadata)."""

    @classmethod
    def normalise(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook: a subclass may derive settings from what a table *sets* (before validation)."""
        return data

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build from a mapping (a config.toml table); unknown keys fail naming the allowed ones."""
        if isinstance(data, dict):
            data = cls.normalise(data)
        if not isinstance(data, dict):
            raise ConfigError(f"[{cls.SECTION or cls.__name__}] must be a table of settings")
        known = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            label = f"{cls.SECTION} setting" if cls.SECTION else f"{cls.__name__} setting"
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"unknown {label}(s): {', '.join(unknown)}; allowed: {allowed}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.init}  # type: ignore[arg-type]

    def replace(self: T, **changes: Any) -> T:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:g}"


def describe(cls: type[Settings]) -> list[dict[str, Any]]:
    """The documented fields of ``cls``: name, type, default, allowed values, description."""
    out = []
    hints = cls._hints()
    for f in fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        meta = f.metadata
        if f.default is not MISSING:
            default: Any = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        allowed = ""
        if meta.get("choices") is not None:
            allowed = ", ".join(f"`{c!r}`" for c in meta["choices"])
        elif meta.get("lo") is not None or meta.get("hi") is not None:
            lo = meta.get("lo_doc") or ("" if meta.get("lo") is None else _num(meta["lo"]))
            hi = meta.get("hi_doc") or ("" if meta.get("hi") is None else _num(meta["hi"]))
            allowed = f"{lo or '-inf'} … {hi or 'inf'}"
        out.append({"name": f.name, "type": _type_name(hints.get(f.name, Any)), "default": default,
                    "allowed": allowed, "doc": meta.get("doc", "")})
    return out


# ------------------------------------------------------------------ TOML output
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    raise ConfigError(f"cannot write {type(value).__name__} value {value!r} to TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def dumps_toml(data: dict[str, dict[str, Any]]) -> str:
    """Write a two-level mapping (sections of scalars/lists/inline tables) as TOML; None values omitted
    (at any depth: TOML has no null)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
