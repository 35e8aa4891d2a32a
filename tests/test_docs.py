"""The documentation site: generated reference pages up to date, every loader message documented,
``mkdocs build --strict`` passes offline."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# loader error classes whose first argument is the user-facing one-line reason
_REASON_CALLS = {"LoaderError", "UnsupportedFormat", "CorruptFile", "EncryptedFile", "EmptyFile",
                 "FileTooLarge"}


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("script", ["gen_config_docs.py", "gen_cli_docs.py"])
def test_generated_reference_is_up_to_date(script: str) -> None:
    result = _run_script(script, "--check")
    assert result.returncode == 0, f"{result.stderr.strip()} (then commit the page)"


def test_config_reference_lists_every_setting() -> None:
    import dataclasses

    from kb_assistant.config import KBConfig

    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for section, cls in KBConfig.sections().items():
        assert f"`[{section}]`" in page
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            assert f"| `{f.name}` |" in page, f"{section}.{f.name} missing from docs/configuration.md"


def _fragments(node: ast.AST) -> list[str]:
    """The constant text of a str literal or the constant parts of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.IfExp):
        return _fragments(node.body) + _fragments(node.orelse)
    return []


def loader_messages() -> set[str]:
    """Constant fragments of every user-facing reason raised or reported by the loaders and ingest."""
    files = sorted((ROOT / "kb_assistant" / "loaders").glob("*.py")) + [ROOT / "kb_assistant" / "ingest.py"]
    found: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.IfExp):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if targets == ["kind"]:  # walker: kind = "broken symlink" if ... else "..."
                    found.update(_fragments(node.value))
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in _REASON_CALLS and node.args:
                found.update(_fragments(node.args[0]))
            elif name in ("WalkEntry", "FailedItem", "finish") and len(node.args) >= 2:
                found.update(_fragments(node.args[1]))
            elif name == "size_limit_message":
                continue
        for node in ast.walk(tree):  # the default reason of finish()
            if isinstance(node, ast.FunctionDef) and node.name == "finish":
                for default in node.args.defaults:
                    found.update(_fragments(default))
    return {frag.strip(" ()':;") for frag in found if len(frag.strip(" ()':;")) >= 4}


def test_troubleshooting_lists_every_loader_message() -> None:
    page = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    messages = loader_messages()
    assert len(messages) > 30  # the scan works
    missing = sorted(m for m in messages if m not in page)
    assert not missing, f"document these loader messages in docs/troubleshooting.md: {missing}"


def test_every_nav_page_exists() -> None:
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)

    def pages(items: object) -> list[str]:
        out: list[str] = []
        if isinstance(items, list):
            for item in items:
                out += pages(item)
        elif isinstance(items, dict):
            for value in items.values():
                out += pages(value)
        elif isinstance(items, str):
            out.append(items)
        return out

    for page in pages(config["nav"]):
        assert (DOCS / page).is_file(), page


_NO_MKDOCS = importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None


@pytest.mark.slow
@pytest.mark.skipif(_NO_MKDOCS, reason="mkdocs / mkdocstrings not installed (pip install -e '.[docs]')")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = (tmp_path / "api.html").read_text(encoding="utf-8")
    assert 'id="kb_assistant.knowledge_base.KnowledgeBase.ingest"' in api  # mkdocstrings rendered
    assert (tmp_path / "img" / "pipeline.svg").is_file()
    for html in tmp_path.glob("*.html"):  # offline site: no web fonts or CDN scripts
        text = html.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text, html.name
