"""The shape of the package: no import cycles (type-checking and function-level imports included),
small modules, and library code that knows no corpus."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "kb_assistant"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every kb_assistant module ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kb_assistant"):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("kb_assistant"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                add(sub if sub in modules else mod)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and "kb_assistant.retrieval" in graph["kb_assistant.knowledge_base"]
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_count(tmp_path):
    pkg = tmp_path / "kb_assistant"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from kb_assistant import a\n")
    modules = {"kb_assistant": pkg / "__init__.py", "kb_assistant.a": pkg / "a.py",
               "kb_assistant.b": pkg / "b.py"}
    graph = {n: _imports(n, p, modules) for n, p in modules.items()}
    assert graph["kb_assistant.a"] == {"kb_assistant.b"} and graph["kb_assistant.b"] == {"kb_assistant.a"}


def test_stages_do_not_reach_back_into_the_facade():
    graph = import_graph()
    for stage in ("retrieval", "ingest", "store.indexes", "store.catalog", "answering.engine", "prompts",
                  "generation", "chunking", "embedding", "integrations.llama_index",
                  "integrations.llama_index_engine", "finetune.data"):
        assert "kb_assistant.knowledge_base" not in graph[f"kb_assistant.{stage}"], stage


def test_modules_are_small():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _code_strings(tree: ast.AST) -> list[str]:
    """String constants of the code (docstrings, which may cite examples, left out)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_library_code_knows_no_corpus():
    """Dev-corpus specifics (the Debian handbook's labels, its questions) live in benchmarks/, not in the
    code of the library (docstrings may quote them as examples)."""
    for path in PKG.rglob("*.py"):
        strings = " ".join(_code_strings(ast.parse(path.read_text(encoding="utf-8")))).lower()
        for word in ("debian", "handbook", "apt-get install", "northwind"):
            assert word not in strings, f"{path.relative_to(ROOT)} has {word!r} in its code"
