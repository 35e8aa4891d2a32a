#!/usr/bin/env python
"""Strip outputs, execution counts and volatile metadata from Jupyter notebooks before committing.

    python scripts/strip_notebooks.py                 # strip every notebooks/*.ipynb in place
    python scripts/strip_notebooks.py a.ipynb b.ipynb # strip these
    python scripts/strip_notebooks.py --check         # exit 1 if a notebook holds outputs (CI / tests)

Only the standard library is used (no nbformat), and the JSON is written the way Jupyter writes it
(indent 1, UTF-8, trailing newline) so a stripped notebook re-saved by Jupyter gives a small diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# notebook-level and cell-level metadata that changes on every run
VOLATILE_NB_META = ("widgets", "varInspector", "toc", "vscode")
VOLATILE_CELL_META = ("execution", "collapsed", "scrolled", "ExecuteTime", "jupyter")


def strip(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook without outputs, execution counts and volatile metadata."""
    for key in VOLATILE_NB_META:
        nb.get("metadata", {}).pop(key, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in VOLATILE_CELL_META:
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    return nb


def dumps(nb: dict[str, Any]) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def problems(nb: dict[str, Any]) -> list[str]:
    """What would be stripped: cells with outputs or execution counts, volatile metadata."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("outputs"):
            found.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i} has an execution count")
    found += [f"notebook metadata {k!r}" for k in VOLATILE_NB_META if k in nb.get("metadata", {})]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if any needs stripping")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    status = 0
    for path in paths:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        if args.check:
            found = problems(nb)
            if found:
                print(f"{path}: {'; '.join(found)} (run python scripts/strip_notebooks.py)", file=sys.stderr)
                status = 1
            continue
        new = dumps(strip(nb))
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"stripped {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
