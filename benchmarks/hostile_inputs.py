"""Every kind of bad input of ``docs/reliability.md`` once, with its outcome, time and memory.

    python benchmarks/hostile_inputs.py                 # the issue's sizes (48 MB text, 95 MB XML...)
    python benchmarks/hostile_inputs.py --small         # the sizes the tests use
    python benchmarks/hostile_inputs.py --isolation     # also: parse in a subprocess vs in process
    python benchmarks/hostile_inputs.py --table         # print the Markdown table of the last results

Cases come from ``tests/hostile_files.py`` (:data:`CASES`: files for the loaders, then the folder and
knowledge-base cases below). Each file is parsed as ``kb ingest`` parses it: in the parser process
under the default ``[ingest]`` limits (plus the case's own), then chunked with the default chunker and
the embedded model's tokenizer. Time is wall time; ``parser MB`` the parser process's peak RSS;
``ingest MB`` the growth of this process's RSS while parsing and chunking. Results go to
``benchmarks/results/hostile_inputs.json``; a case whose outcome is not the expected one makes the exit
status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hostile_files as H  # noqa: E402

from kb_assistant.errors import KBError, LoaderError  # noqa: E402
from kb_assistant.loaders import sandbox  # noqa: E402
from kb_assistant.loaders.limits import ParseLimits  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "hostile_inputs.json"
SAMPLE_KB = ROOT / "examples" / "sample_kb"


def _chunker() -> Any:
    from kb_assistant.chunking import Chunker
    from kb_assistant.config import ChunkingConfig, EmbeddingConfig
    from kb_assistant.embedding import get_embedder

    emb = get_embedder(EmbeddingConfig())
    return Chunker(ChunkingConfig(), emb.count_tokens, emb.max_tokens)


def run_case(case: H.Case, folder: Path, full: bool, chunker: Any) -> dict[str, Any]:
    """Build, parse (isolated, default limits + the case's) and chunk one case; check its expectation."""
    path = case.build(folder, full)
    limits = ParseLimits(isolate=True, **case.limits)
    row: dict[str, Any] = {"name": case.name, "kind": case.kind, "what": case.what,
                           "file_bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file())}
    with H.PeakRSS() as rss:
        t0 = time.perf_counter()
        try:
            docs, stats = sandbox.run(path, max_bytes=50 * 2**20, pdf_engine="auto", limits=limits)
            text = "\n".join(d.text for d in docs)
            row["parser_mb"] = stats["peak_rss_mb"]
            row["parse_s"] = time.perf_counter() - t0
            chunks = chunker.chunk(docs, "case") if case.chunk or len(text) < 5 * 2**20 else None
            row["outcome"] = f"loaded: {len(text):,} characters" + (
                f", {len(chunks):,} chunks" if chunks is not None else "")
            ok = case.error is None and (case.text is None or case.text in text)
            if chunks is not None:
                ok = ok and all(c.n_tokens <= chunker.limit for c in chunks)
                row["max_chunk_tokens"] = max((c.n_tokens for c in chunks), default=0)
        except LoaderError as exc:
            row["parse_s"] = time.perf_counter() - t0
            row["outcome"] = f"refused: {exc}"
            ok = case.text is None and (case.error is None or re.search(case.error, str(exc)) is not None)
        row["seconds"] = time.perf_counter() - t0
    row["ingest_mb"] = round(rss.peak_mb, 1)
    row["process_peak_mb"] = round(rss.max_mb, 1)
    row["limit"] = limit_of(case, row["outcome"])
    budget = limits.timeout_s or float("inf")
    row["within_budget"] = (row["seconds"] <= budget + 5 and (row.get("parser_mb") or 0) <= 2048
                            and rss.max_mb <= 2048)
    row["ok"] = ok and row["within_budget"]
    return row


#: the limit that decides the cases that load (a refusal names its own setting)
LOADED_BY = {
    "pdf-cyclic-page-tree": "page-tree walk visits each node once",
    "pdf-no-eof": "PDFium reads without %%EOF",
    "pdf-truncated": "parse_timeout_s / parse_memory_mb",
    "docx-many-paragraphs": "max_xml_mb 32; chunks within the embedder's window",
    "docx-external-entity": "entities never resolved (no network, no file read)",
    "xlsx-dimension-bomb": "rows streamed; <dimension> not trusted",
    "xlsx-stale-dimension": "rows streamed; <dimension> not trusted",
    "xlsx-far-cells": "rows streamed; empty cells not padded",
    "html-flat-big": "chunker linear in time, bounded in memory",
    "eml-big-attachment": "attachments named, not decoded",
    "txt-control-chars": "control characters removed from the text",
    "csv-wide-row": "max_text_chars 64,000,000",
}
_SETTING_DEFAULTS = {"max_pages": "10,000", "max_unzipped_mb": "100", "max_xml_mb": "32",
                     "max_text_chars": "64,000,000", "max_chunks": "100,000", "parse_timeout_s": "300",
                     "parse_memory_mb": "2,048"}


def limit_of(case: H.Case, outcome: str) -> str:
    """The setting a refusal names (with the case's value, else the default), or what bounds a load."""
    found = re.search(r"\[ingest\] (\w+)", outcome)
    if found:
        name = found.group(1)
        field = {"parse_timeout_s": "timeout_s", "parse_memory_mb": "memory_mb"}.get(name, name)
        value = case.limits.get(field, _SETTING_DEFAULTS.get(name, "?"))
        return f"`{name}` {value:,}" if isinstance(value, (int, float)) else f"`{name}` {value}"
    if case.name.startswith("txt-") and case.chunk:
        return "chunker linear in time, bounded in memory (any line length)"
    return LOADED_BY.get(case.name, "parse_timeout_s 300 / parse_memory_mb 2,048 (the parser process)")


def folder_cases(folder: Path) -> list[dict[str, Any]]:
    """The walker's cases: links out of the tree, loops, FIFOs, devices, odd names."""
    from kb_assistant.cli.common import safe
    from kb_assistant.loaders import walk

    root = folder / "docs"
    root.mkdir()
    (folder / "outside").mkdir()
    (folder / "outside" / "secret.txt").write_text("secret")
    (root / "ok.txt").write_text("ok")
    os.symlink(folder / "outside" / "secret.txt", root / "link-out.txt")
    os.symlink(folder / "outside", root / "dir-out", target_is_directory=True)
    os.symlink(root, root / "loop", target_is_directory=True)
    os.symlink(root / "gone.txt", root / "broken.txt")
    os.symlink("/dev/zero", root / "zero.txt")
    os.mkfifo(root / "pipe.txt")
    (root / "name\x1b]0;owned\x07\u202e.txt").write_text("odd name")
    t0 = time.perf_counter()
    entries = list(walk(root))
    seconds = time.perf_counter() - t0
    expected = {"link-out.txt": "outside", "dir-out": "outside", "broken.txt": "broken symlink",
                "zero.txt": "outside", "pipe.txt": "named pipe", "ok.txt": None}
    rows = []
    for entry in entries:
        name = entry.path.name
        want = expected.get(name)
        ok = (entry.error is None) if want is None else (want in (entry.error or ""))
        limit = ("links stay inside the ingested folder" if want == "outside" else
                 "only regular files are opened" if want == "named pipe" else
                 "reported, not skipped silently" if want else "names escaped when shown")
        rows.append({"name": f"walk-{safe(name)}", "kind": "folder", "what": f"{safe(name)} in a folder",
                     "limit": limit, "outcome": entry.error or "ingested",
                     "seconds": seconds / max(len(entries), 1), "ok": ok})
    rows.append({"name": "walk-symlink-loop", "kind": "folder", "what": "a folder symlinked into itself",
                 "limit": "each folder walked once", "outcome": "walked once (not followed again)",
                 "seconds": seconds, "ok": sum(e.path.name == "ok.txt" for e in entries) == 1})
    return rows


def store_cases(folder: Path) -> list[dict[str, Any]]:
    """Damaged derived files and docstores of a real knowledge base of the sample files."""
    from kb_assistant import KnowledgeBase

    base = folder / "base"
    kb = KnowledgeBase(base)
    kb.ingest(SAMPLE_KB, show_progress=False)
    kb.close()
    damage = {
        "dense-missing": ("dense.faiss", None), "dense-truncated": ("dense.faiss", 0.5),
        "dense-random": ("dense.faiss", b"random"), "sparse-truncated": ("sparse/bm25.npz", 0.5),
        "sparse-random": ("sparse/bm25.npz", b"random"),
        "calibration-random": ("calibration.json", b"random"),
        "docstore-missing": ("docstore.sqlite3", None), "docstore-truncated": ("docstore.sqlite3", 0.5),
        "docstore-random": ("docstore.sqlite3", b"random"),
    }
    rows = []
    for name, (member, how) in damage.items():
        kb_dir = folder / name
        shutil.copytree(base, kb_dir)
        target = kb_dir / member
        if how is None:
            target.unlink()
        elif isinstance(how, float):
            target.write_bytes(target.read_bytes()[: int(target.stat().st_size * how)])
        else:
            target.write_bytes(os.urandom(4096))
        for extra in ("docstore.sqlite3-wal", "docstore.sqlite3-shm"):
            if member.startswith("docstore"):
                (kb_dir / extra).unlink(missing_ok=True)
        rss = H.PeakRSS().__enter__()
        t0 = time.perf_counter()
        try:
            kb = KnowledgeBase(kb_dir, create=False)
            hits = kb.search("How many days of annual leave?", k=3)
            check = kb.verify()
            outcome = f"repaired on open: {len(hits)} hits" if check["ok"] else \
                f"searchable ({len(hits)} hits), reported by kb verify, fixed by kb repair"
            if not check["ok"]:
                check = kb.repair()
            kb.close()
            ok = bool(hits) and check["ok"] and member != "docstore.sqlite3"
        except KBError as exc:
            outcome = f"refused: {exc}"
            ok = member == "docstore.sqlite3"
        damage_name = ("deleted" if how is None else "cut in half" if isinstance(how, float)
                       else "random bytes")
        seconds = time.perf_counter() - t0
        rss.__exit__(None, None, None)
        limit = ("docstore checked on open: never a silent empty KB" if member.startswith("docstore")
                 else "derived file: rebuilt from the docstore on open")
        rows.append({"name": name, "kind": "store", "what": f"{member}: {damage_name}", "limit": limit,
                     "outcome": outcome, "seconds": seconds, "ingest_mb": round(rss.peak_mb, 1), "ok": ok})
    return rows


def misuse_cases(tmp: Path) -> list[dict[str, Any]]:
    """The CLI, Python API and injection cases (``benchmarks/hostile_misuse.py``)."""
    import hostile_misuse as M

    from kb_assistant import KnowledgeBase

    base = tmp / "store" / "base"  # the sample knowledge base store_cases built
    rows = M.cli_cases(tmp / "cli", base)
    kb = KnowledgeBase(base, create=False)
    try:
        rows += M.api_cases(tmp / "api", kb, H.PeakRSS)
    finally:
        kb.close()
    rows += M.injection_cases(tmp / "injection", H.PeakRSS)
    for row in rows:
        mark = "ok " if row["ok"] else "BAD"
        print(f"{mark} {row['name']:28} {row['seconds']:7.2f} s  {row['outcome'][:90]}", flush=True)
    return rows


def isolation(folder: Path) -> dict[str, Any]:
    """Parse the sample files in process, in the parser process, and the cost of a cooperative check."""
    import sys as _sys

    from kb_assistant.loaders import load_file

    files = sorted(p for p in SAMPLE_KB.iterdir() if p.is_file())
    result: dict[str, Any] = {"files": len(files)}
    limits = ParseLimits(isolate=True)
    load_file(files[0], limits=limits)  # start the worker (its start is paid once per ingest)
    for label, kw in (("in_process_s", {}), ("subprocess_s", {"limits": limits})):
        t0 = time.perf_counter()
        for _ in range(5):
            for path in files:
                load_file(path, **kw)
        result[label] = (time.perf_counter() - t0) / (5 * len(files))
    t0 = time.perf_counter()
    sandbox.shutdown()
    load_file(files[0], limits=limits)
    result["worker_start_s"] = time.perf_counter() - t0

    # the finest cooperative check possible: a deadline tested on every Python call (sys.setprofile)
    def profiled(path: Path, deadline: float) -> tuple[float, str]:
        def hook(frame: Any, event: str, arg: Any) -> None:
            if time.perf_counter() > deadline:
                raise TimeoutError
        t = time.perf_counter()
        _sys.setprofile(hook)
        try:
            load_file(path)
            what = "finished"
        except (TimeoutError, LoaderError) as exc:
            what = type(exc).__name__
        finally:
            _sys.setprofile(None)
        return time.perf_counter() - t, what

    t0 = time.perf_counter()
    for path in files:
        profiled(path, float("inf"))
    result["cooperative_overhead"] = (time.perf_counter() - t0) / len(files) / result["in_process_s"]
    bomb = H.nested_divs(folder / "deep.html", 100_000)
    bomb.write_text(bomb.read_text().replace("<html>", "<html><body>"))
    xml = H.docx_many_paragraphs(folder / "big.docx", 220_000)
    for name, path in (("docx_220k_paragraphs", xml),):
        seconds, what = profiled(path, time.perf_counter() + 1.0)
        result[f"cooperative_1s_deadline_{name}"] = {"stopped_after_s": round(seconds, 2), "how": what}
        t0 = time.perf_counter()
        try:
            load_file(path, limits=ParseLimits(isolate=True, timeout_s=1.0))
        except LoaderError as exc:
            result[f"subprocess_1s_deadline_{name}"] = {"stopped_after_s": round(time.perf_counter() - t0, 2),
                                                        "how": str(exc)}
    return result


def table(data: dict[str, Any]) -> str:
    lines = ["| # | kind | input | limit that applies | outcome | time | peak MB (parser / `kb`) "
             "| ingest MB |", "|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(data["cases"], 1):
        outcome = row["outcome"].replace("|", "\\|").replace("\n", " ")
        peak = row.get("parser_mb") or row.get("cli_mb")
        peak_s = f"{peak:.0f}" if peak else "–"
        ingest = f"{row['ingest_mb']:.0f}" if "ingest_mb" in row else "–"
        lines.append(f"| {i} | {row['kind']} | {row['what']} | {row.get('limit', '–')} | {outcome} "
                     f"| {row['seconds']:.2f} s | {peak_s} | {ingest} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="the tests' sizes instead of the issue's")
    ap.add_argument("--isolation", action="store_true", help="also measure subprocess vs in-process parsing")
    ap.add_argument("--only", help="regex: run only the matching cases")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of the saved results")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    chunker = _chunker()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in H.CASES:
            if args.only and not re.search(args.only, case.name):
                continue
            folder = Path(tmp) / case.name
            folder.mkdir()
            row = run_case(case, folder, not args.small, chunker)
            print(f"{'ok ' if row['ok'] else 'BAD'} {row['name']:28} {row['seconds']:7.2f} s  "
                  f"{row.get('parser_mb') or 0:6.0f} MB  {row['ingest_mb']:6.0f} MB  {row['outcome'][:90]}",
                  flush=True)
            rows.append(row)
            shutil.rmtree(folder)
        if not args.only:
            (Path(tmp) / "walk").mkdir()
            rows += folder_cases(Path(tmp) / "walk")
            (Path(tmp) / "store").mkdir()
            rows += store_cases(Path(tmp) / "store")
            rows += misuse_cases(Path(tmp))
        elif args.only == "misuse":  # only the CLI / API / injection cases (they need the store's base)
            (Path(tmp) / "store").mkdir()
            store_cases(Path(tmp) / "store")
            rows += misuse_cases(Path(tmp))
        iso = isolation(Path(tmp)) if args.isolation else None
    data: dict[str, Any] = {
        "scale": "small" if args.small else "full", "machine": {"cpus": os.cpu_count(),
                                                              "python": platform.python_version(),
                                                              "load_avg": os.getloadavg()},
        "kinds": len(rows), "bad": [r["name"] for r in rows if not r["ok"]], "cases": rows}
    if iso is not None:
        data["isolation"] = iso
    if not args.only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(rows)} kinds of bad input, {len(data['bad'])} with an unexpected outcome: {data['bad']}")
    if iso is not None:
        print(json.dumps(iso, indent=1))
    return 1 if data["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
