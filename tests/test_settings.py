"""Typed settings: metadata read by validate() (type, choices, range, callable bounds), from_dict,
to_dict/replace, and describe() as used by scripts/gen_config_docs.py."""

from __future__ import annotations

import importlib.util
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from kb_assistant.errors import ConfigError
from kb_assistant.settings import Settings, describe, setting

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Demo(Settings):
    """A demo section."""

    SECTION: ClassVar[str] = "demo"
    k: int = setting(5, lo=1, hi=100, doc="hits per question")
    budget: int = setting(40, lo=0, hi=lambda s: s.k * 10, hi_doc="k × 10", doc="derived bound")
    ratio: float = setting(0.5, lo=0.0, hi=1.0, doc="a fraction")
    mode: str = setting("dense", choices=("dense", "sparse", "hybrid"), doc="retrieval | mode")
    flag: bool = setting(True, doc="on or off")
    limit: int | None = setting(None, lo=1, doc="optional, at least 1 when set")
    names: list[str] = setting(factory=list, doc="a list")
    weights: dict[str, float] = setting(factory=dict, doc="a table")
    floor: float = setting(-2.0, hi=5, doc="only an upper bound")


@dataclass
class Checked(Settings):
    lo: int = setting(1)
    hi: int = setting(2)

    def check(self) -> None:
        if self.lo > self.hi:
            raise ConfigError("Checked.lo must not exceed Checked.hi")


@dataclass
class Child(Demo):
    extra: int = setting(1, lo=0, hi=3)


@dataclass
class Required(Settings):
    name: str = setting(doc="no default")


def test_defaults_are_valid_and_round_trip():
    d = Demo()
    assert Demo.from_dict(d.to_dict()) == d
    custom = Demo(k=3, budget=30, names=("a", "b"), weights={"x": 1})
    assert custom.to_dict()["names"] == ["a", "b"]  # plain TOML-able values
    assert Demo.from_dict(custom.to_dict()).to_dict() == custom.to_dict()


@pytest.mark.parametrize("field, value, message", [
    ("k", "3", "Demo.k must be int; got '3'"),
    ("k", True, "Demo.k must be int; got True"),  # bool is not an int here
    ("k", 2.0, "Demo.k must be int"),
    ("ratio", False, "Demo.ratio must be float"),
    ("ratio", "0.5", "Demo.ratio must be float"),
    ("flag", 1, "Demo.flag must be bool; got 1"),
    ("mode", None, "Demo.mode must be str"),
    ("limit", "7", "Demo.limit must be int | None"),
    ("names", ["a", 1], "Demo.names must be list[str]"),
    ("names", "abc", "Demo.names must be list[str]"),
    ("weights", {"x": "heavy"}, "Demo.weights must be dict[str, float]"),
])
def test_type_errors_name_the_field_and_the_type(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("|", r"\|")):
        Demo(**{field: value})


def test_int_is_accepted_for_float_and_none_for_optional():
    assert Demo(ratio=1).ratio == 1
    assert Demo(limit=None).limit is None and Demo(limit=4).limit == 4


def test_choices_are_listed():
    with pytest.raises(ConfigError, match="Demo.mode must be one of 'dense', 'sparse', 'hybrid'; got 'bm25'"):
        Demo(mode="bm25")


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, r"Demo.k must be in \[1, 100\]; got 0"),
    ({"k": 101}, r"Demo.k must be in \[1, 100\]; got 101"),
    ({"ratio": 1.5}, r"Demo.ratio must be in \[0.0, 1.0\]"),
    ({"limit": 0}, r"Demo.limit must be in \[1, inf\]; got 0"),
    ({"floor": 6}, r"Demo.floor must be in \[-inf, 5\]"),
    ({"k": 2, "budget": 21}, r"Demo.budget must be in \[0, 20\]; got 21"),  # callable bound of k
])
def test_ranges(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Demo(**kwargs)


def test_callable_bound_follows_the_instance():
    assert Demo(k=50, budget=500).budget == 500
    assert Demo(k=1, budget=10).budget == 10
    assert Demo(floor=-1e9).floor == -1e9  # no lower bound declared


def test_replace_validates():
    d = Demo()
    assert d.replace(k=7).k == 7 and d.k == 5
    with pytest.raises(ConfigError, match="Demo.k"):
        d.replace(k=0)


def test_check_runs_after_the_field_rules():
    assert Checked(lo=1, hi=1).hi == 1
    with pytest.raises(ConfigError, match="must not exceed"):
        Checked(lo=3, hi=2)
    with pytest.raises(ConfigError, match="Checked.lo must be int"):  # field rules first
        Checked(lo="3", hi=2)


def test_subclass_fields_are_validated_after_the_parent_was():
    Demo(k=4)  # fills the parent's type-hint cache first
    assert Child(extra=3).extra == 3
    with pytest.raises(ConfigError, match=r"Child.extra must be in \[0, 3\]"):
        Child(extra=4)
    with pytest.raises(ConfigError, match="Child.k must be int"):
        Child(k="1")


def test_from_dict_unknown_keys_and_non_tables():
    assert Demo.from_dict({"k": 9, "mode": "hybrid"}) == Demo(k=9, mode="hybrid")
    with pytest.raises(ConfigError) as err:
        Demo.from_dict({"k": 9, "colour": "red", "alpha": 1})
    msg = str(err.value)
    assert msg.startswith("unknown demo setting(s): alpha, colour; allowed: ")
    assert "budget, flag, floor, k, limit, mode, names, ratio, weights" in msg
    with pytest.raises(ConfigError, match="unknown Checked setting"):  # no SECTION: the class name
        Checked.from_dict({"x": 1})
    with pytest.raises(ConfigError, match=r"\[demo\] must be a table of settings"):
        Demo.from_dict(["k", 3])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Demo.k must be in"):  # values are validated too
        Demo.from_dict({"k": 0})


def test_describe_reads_the_same_metadata():
    rows = {r["name"]: r for r in describe(Demo)}
    assert list(rows) == ["k", "budget", "ratio", "mode", "flag", "limit", "names", "weights", "floor"]
    assert rows["k"] == {"name": "k", "type": "int", "default": 5, "allowed": "1 … 100",
                         "doc": "hits per question"}
    assert rows["budget"]["allowed"] == "0 … k × 10"  # a callable bound shows its hi_doc
    assert rows["ratio"]["allowed"] == "0 … 1" and rows["ratio"]["type"] == "float"
    assert rows["mode"]["allowed"] == "`'dense'`, `'sparse'`, `'hybrid'`"
    assert rows["flag"]["allowed"] == "" and rows["flag"]["type"] == "bool"
    assert rows["limit"]["type"] == "int | None" and rows["limit"]["allowed"] == "1 … inf"
    assert rows["names"]["default"] == [] and rows["names"]["type"] == "list[str]"
    assert rows["weights"]["type"] == "dict[str, float]"
    assert rows["floor"]["allowed"] == "-inf … 5"
    assert describe(Required)[0]["default"] is MISSING


def test_config_docs_script_renders_the_metadata():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.section_markdown("demo", f"{__name__}:Demo", "a test")
    lines = text.splitlines()
    assert lines[0] == "## `[demo]` — Demo" and "A demo section." in lines
    assert "| `k` | `int` | `5` | 1 … 100 | hits per question |" in lines
    assert "| `flag` | `bool` | `True` | `true`, `false` | on or off |" in lines
    assert "| `mode` | `str` | `'dense'` | `'dense'`, `'sparse'`, `'hybrid'` | retrieval \\| mode |" in lines
    assert "| `name` | `str` | (required) |  | no default |" in gen.section_markdown(
        None, f"{__name__}:Required", "a test").splitlines()
