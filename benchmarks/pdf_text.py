#!/usr/bin/env python
"""PDF text quality and speed: each engine against poppler's ``pdftotext`` on real manuals (en + zh).

    scripts/get_pdf_corpus.sh                                 # PDFs -> benchmarks/.corpus/pdf/ (once)
    flock /tmp/kb-bench.lock python benchmarks/pdf_text.py --repeats 3 --ocr-pages 4

Engines, each run in its own subprocess per repeat (so peak RSS is per engine), interleaved:
  pdfium   pypdfium2 page text + our normalisation (soft hyphens, NFC/spaces, CJK spacing); no furniture
           removal, so it is compared with the whole pdftotext page
  pypdf    raw ``page.extract_text()`` (what the loader used before)
  loader   ``load_file(path)`` end to end (pdf_engine="auto": page furniture and TOC lines removed, outline
           headings, pypdf opened for encryption and the title). Its recall is lower by design (pdftotext
           keeps the furniture); its precision says whether what it keeps is faithful.
Metrics, summed over the pages of each file (page i of the engine vs page i of pdftotext):
  en  word agreement: 2*M/(|ref|+|hyp|) over \\w+ tokens (lower case), M = difflib matching words in order;
      precision M/|hyp|, recall M/|ref|
  zh  char agreement: the same over the characters with all whitespace removed
  glued: share of whitespace-separated tokens with a run of more than 30 ASCII letters
  cjk_spaces: spaces between two CJK characters per 1,000 CJK characters (what is left are mostly spaces
  at emphasis boundaries and between table cells, which pdftotext has too); letter_spaced_runs: runs of
  three or more single ideographs separated by spaces ("对 于 一 个"), the trace of justification
  pages/s: pages / seconds of parsing (files opened and every page read), median over the repeats
OCR (``--ocr-pages N``): N pages of known text per language (taken from pdftotext of maint-guide en/zh),
typeset with fpdf2, rendered to images and wrapped as an image-only PDF, then read by ``load_file``.
Char agreement as above against the known text; pages/s excludes the one-off engine load.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "benchmarks" / ".corpus" / "pdf"
FILES = {  # file -> language of the metric
    "maint-guide.en.pdf": "en", "debian-faq.en.pdf": "en", "developers-reference.pdf": "en",
    "maint-guide.zh-cn.pdf": "zh", "debian-edu-manual.zh-cn.pdf": "zh",
    "debian-faq.zh-cn.pdf": "zh",  # a one-page stub ("the Chinese PDF is not available"), kept for honesty
}
ENGINES = ("pdfium", "pypdf", "loader")
_WORD = re.compile(r"\w+")
_GLUED = re.compile(r"[A-Za-z]{31,}")
_H = "\u3400-\u9fff\uf900-\ufaff"  # Han ideographs
_CJK = re.compile(f"[{_H}]")
_CJK_SPACE = re.compile(f"(?<=[{_H}]) +(?=[{_H}])")
#: three or more single ideographs separated by single spaces: what justification leaves ("对 于 一 个")
_SPACED_RUN = re.compile(f"(?<![{_H}])[{_H}](?: [{_H}]){{2,}}(?![{_H}])")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- workers (one engine per process)

def pages_pdfium(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    from kb_assistant.loaders.base import normalize_text
    from kb_assistant.loaders.cleanup import full_line_width, normalize_cjk
    from kb_assistant.loaders.pdf_loader import _pdfium_page_text, resolve_soft_hyphens

    doc = pdfium.PdfDocument(str(path))
    raw = [_pdfium_page_text(doc, i, path.name) or "" for i in range(len(doc))]
    doc.close()
    pages = [normalize_text(t or "") for t in resolve_soft_hyphens(raw)]
    width = full_line_width([line for p in pages for line in p.split("\n")])
    return [normalize_cjk(p, width) for p in pages]


def pages_pypdf(path: Path) -> list[str]:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.CRITICAL)
    return [page.extract_text() or "" for page in PdfReader(str(path), strict=False).pages]


def pages_loader(path: Path) -> list[str]:
    from kb_assistant.loaders import load_file

    docs = load_file(path)
    n = max(d.metadata["page"] for d in docs)
    out = [""] * n
    for d in docs:
        out[d.metadata["page"] - 1] += d.text
    return out


WORKERS = {"pdfium": pages_pdfium, "pypdf": pages_pypdf, "loader": pages_loader}


def worker(engine: str, files: list[str], out: Path) -> None:
    import pypdf  # noqa: F401 - imports are paid once per process, not per file: keep them off the clock
    import pypdfium2  # noqa: F401

    import kb_assistant.loaders.pdf_loader  # noqa: F401

    result: dict[str, dict] = {}
    for name in files:
        start = time.perf_counter()
        pages = WORKERS[engine](CORPUS / name)
        result[name] = {"seconds": time.perf_counter() - start, "pages": pages}
    out.write_text(json.dumps({"files": result, "peak_rss_mb": _rss_mb()}, ensure_ascii=False))


def run_worker(engine: str, files: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        proc = subprocess.run([sys.executable, __file__, "--worker", engine, "--out", str(out),
                               "--files", ",".join(files)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{engine} failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- metrics

def reference(name: str) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(CORPUS / name), "-"], capture_output=True,
                         text=True, check=True).stdout
    seconds = time.perf_counter() - start
    pages = out.split("\f")
    return (pages[:-1] if pages and not pages[-1].strip() else pages), seconds


def tokens(text: str, lang: str) -> list[str]:
    return _WORD.findall(text.lower()) if lang == "en" else [c for c in text if not c.isspace()]


def agreement(ref_pages: list[str], hyp_pages: list[str], lang: str) -> dict[str, float]:
    """2M/(|ref|+|hyp|), and precision M/|hyp| and recall M/|ref|, summed over pages."""
    matched = n_ref = n_hyp = 0
    for i in range(max(len(ref_pages), len(hyp_pages))):
        a = tokens(ref_pages[i] if i < len(ref_pages) else "", lang)
        b = tokens(hyp_pages[i] if i < len(hyp_pages) else "", lang)
        sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
        matched += sum(block.size for block in sm.get_matching_blocks())
        n_ref += len(a)
        n_hyp += len(b)
    return {"agreement": 2 * matched / (n_ref + n_hyp) if n_ref + n_hyp else 1.0,
            "precision": matched / n_hyp if n_hyp else 1.0, "recall": matched / n_ref if n_ref else 1.0}


def text_stats(pages: list[str]) -> dict[str, float]:
    words = [w for p in pages for w in p.split()]
    cjk = sum(len(_CJK.findall(p)) for p in pages)
    return {"glued": sum(1 for w in words if _GLUED.search(w)) / max(len(words), 1),
            "cjk_spaces_per_1000": 1000 * sum(len(_CJK_SPACE.findall(p)) for p in pages) / max(cjk, 1),
            "letter_spaced_runs": sum(len(_SPACED_RUN.findall(p)) for p in pages),
            "words": len(words)}


def without_furniture(pages: list[str]) -> list[str]:
    from kb_assistant.loaders.base import normalize_text
    from kb_assistant.loaders.furniture import strip_furniture

    return strip_furniture([normalize_text(p) for p in pages])[0]


# ---------------------------------------------------------------- OCR

def ocr_benchmark(n_pages: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import fixtures_files as F

    from kb_assistant.loaders import load_file, ocr

    font = F.cjk_font_path()
    if font is None or not ocr.available():
        return {"skipped": "needs a CJK font and the ocr extra (pip install -e '.[ocr]')"}
    t0 = time.perf_counter()
    ocr.read_image(__import__("numpy").full((64, 64, 3), 255, dtype="uint8"))
    load_s = time.perf_counter() - t0
    out: dict = {"engine_load_s": load_s, "render_long_side_px": ocr.RENDER_LONG_SIDE,
                 "render_max_dpi": ocr.RENDER_MAX_DPI}
    for lang, source in (("en", "maint-guide.en.pdf"), ("zh", "maint-guide.zh-cn.pdf")):
        ref_pages, _ = reference(source)
        known = [p for p in without_furniture(ref_pages[12:]) if len(p) > 800][:n_pages]
        known = [_typeset_able(p[:1500] if lang == "en" else p[:700], font) for p in known]
        with tempfile.TemporaryDirectory() as tmp:
            pdf = F.make_image_pdf(Path(tmp) / f"scan-{lang}.pdf", known, font=font)
            start = time.perf_counter()
            docs = load_file(pdf)
            seconds = time.perf_counter() - start
        got = [""] * len(known)
        for d in docs:
            got[d.metadata["page"] - 1] = d.text
        row = {"pages": len(known), "seconds": seconds, "pages_per_s": len(known) / seconds,
               **{f"char_{k}": v for k, v in agreement(known, got, "zh").items()},
               "all_pages_marked_ocr": all(d.metadata.get("ocr") for d in docs)}
        if lang == "en":  # spaces matter in English: words too
            row.update({f"word_{k}": v for k, v in agreement(known, got, "en").items()})
        out[lang] = row
    return out


def _typeset_able(text: str, font: str) -> str:
    """``text`` without the characters the font has no glyph for (they would not be on the page)."""
    from fontTools.ttLib import TTFont

    cmap = TTFont(font, fontNumber=0).getBestCmap()
    return "".join(ch for ch in text if ch in "\n " or ord(ch) in cmap)


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--files", default=",".join(FILES))
    ap.add_argument("--ocr-pages", type=int, default=0, help="also measure OCR on N pages per language")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "pdf_text.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--markdown", type=Path, help="only print the docs table of an earlier --json file")
    args = ap.parse_args()
    files = [f for f in args.files.split(",") if f]
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text(encoding="utf-8"))))
        return 0
    if args.worker:
        worker(args.worker, files, args.out)
        return 0
    missing = [f for f in files if not (CORPUS / f).exists()]
    if missing or shutil.which("pdftotext") is None:
        print(f"needs scripts/get_pdf_corpus.sh and pdftotext (poppler-utils); missing: {missing}",
              file=sys.stderr)
        return 1
    engines = args.engines.split(",")
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for rep in range(args.repeats):  # interleaved: A B C A B C
        for engine in engines:
            runs[engine].append(run_worker(engine, files))
            secs = sum(f["seconds"] for f in runs[engine][-1]["files"].values())
            print(f"  run {rep + 1} {engine:7s} {secs:6.2f} s", flush=True)
    refs = {name: reference(name) for name in files}
    table: dict[str, dict] = {}
    for engine, results in runs.items():
        per_file = {}
        for name in files:
            lang = FILES[name]
            ref_pages, _ = refs[name]
            pages = results[0]["files"][name]["pages"]
            secs = statistics.median(r["files"][name]["seconds"] for r in results)
            per_file[name] = {"lang": lang, "pages": len(ref_pages), "seconds_median": secs,
                              "pages_per_s": len(ref_pages) / secs, **agreement(ref_pages, pages, lang),
                              **text_stats(pages)}
        total_pages = sum(r["pages"] for r in per_file.values())
        total_s = statistics.median(sum(f["seconds"] for f in r["files"].values()) for r in results)
        table[engine] = {"files": per_file, "pages": total_pages, "seconds_median": total_s,
                         "pages_per_s": total_pages / total_s,
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
    ref_s = sum(s for _, s in refs.values())
    table["pdftotext"] = {"pages": sum(len(p) for p, _ in refs.values()), "seconds": ref_s,
                          "pages_per_s": sum(len(p) for p, _ in refs.values()) / ref_s,
                          "files": {n: {"lang": FILES[n], **text_stats(refs[n][0])} for n in files}}
    report = {"table": table, "load_average": os.getloadavg(), "cpu_count": os.cpu_count(),
              "repeats": args.repeats}
    if args.ocr_pages:
        report["ocr"] = ocr_benchmark(args.ocr_pages)
    print_table(table, files)
    print("\n" + markdown({"table": table}) + "\n")
    for engine in ("pdfium", "loader"):
        if engine in table and "pypdf" in table:
            ratio = table[engine]["pages_per_s"] / table["pypdf"]["pages_per_s"]
            table[engine]["speed_vs_pypdf"] = ratio
            print(f"speed {engine} / pypdf = {ratio:.1f}x")
    if "ocr" in report:
        print("ocr:", json.dumps(report["ocr"], indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"load average {os.getloadavg()}; wrote {args.json}")
    return 0


def markdown(report: dict) -> str:
    """The tables of docs/benchmarks.md ("PDF text") from a results file."""
    table = report["table"]
    out = ["| file (pages) | metric | pdfium + normaliser | raw pypdf | loader end to end (P / R) "
           "| pdftotext |", "|---|---|---|---|---|---|"]
    for name, ref in table["pdftotext"]["files"].items():
        eng = {e: table[e]["files"][name] for e in ENGINES if e in table}
        what = "word" if ref["lang"] == "en" else "char"
        loader = eng.get("loader")
        cells = [f"{100 * eng[e]['agreement']:.2f} %" if e in eng else "-" for e in ("pdfium", "pypdf")]
        cells.append(f"{100 * loader['agreement']:.2f} % ({100 * loader['precision']:.2f} / "
                     f"{100 * loader['recall']:.2f})" if loader else "-")
        row = f"| {name} ({eng['pdfium']['pages']}) | {what} agreement | {' | '.join(cells)}"
        out.append(row + " | (reference) |")
        if ref["lang"] == "en":
            glue = [f"{100 * eng[e]['glued']:.3f} %" if e in eng else "-" for e in ENGINES]
            out.append(f"| | glued words | {' | '.join(glue)} | {100 * ref['glued']:.3f} % |")
        else:
            spaced = [f"{eng[e]['letter_spaced_runs']} / {eng[e]['cjk_spaces_per_1000']:.2f}"
                      if e in eng else "-" for e in ENGINES]
            out.append(f"| | letter-spaced runs / CJK-CJK spaces per 1k | {' | '.join(spaced)} | "
                       f"{ref['letter_spaced_runs']} / {ref['cjk_spaces_per_1000']:.2f} |")
    speed = [f"{table[e]['pages_per_s']:.0f} pages/s, {table[e]['peak_rss_mb']:.0f} MB" if e in table else "-"
             for e in ENGINES]
    out.append(f"| all ({table['pdfium']['pages']}) | speed, peak RSS | {' | '.join(speed)} | "
               f"{table['pdftotext']['pages_per_s']:.0f} pages/s |")
    return "\n".join(out)


def print_table(table: dict, files: list[str]) -> None:
    print(f"\n{'engine':8s} {'file':30s} {'pages':>5s} {'agree':>7s} {'prec':>7s} {'recall':>7s} "
          f"{'glued %':>8s} {'cjk sp/1k':>9s} {'ls runs':>8s} {'pages/s':>8s}")
    for engine, row in table.items():
        if engine == "pdftotext":
            continue
        for name in files:
            r = row["files"][name]
            print(f"{engine:8s} {name:30s} {r['pages']:5d} {100 * r['agreement']:6.2f}% "
                  f"{100 * r['precision']:6.2f}% {100 * r['recall']:6.2f}% {100 * r['glued']:7.3f}% "
                  f"{r['cjk_spaces_per_1000']:9.2f} {r['letter_spaced_runs']:8d} {r['pages_per_s']:8.1f}")
        print(f"{engine:8s} {'ALL':30s} {row['pages']:5d} {'':7s} {'':7s} {'':7s} {'':8s} {'':9s} {'':8s} "
              f"{row['pages_per_s']:8.1f}  peak RSS {row['peak_rss_mb']:.0f} MB")
    ref = table.get("pdftotext")
    if ref:
        for name in files:
            r = ref["files"][name]
            print(f"{'pdftotxt':8s} {name:30s} {'':5s} {'':7s} {'':7s} {'':7s} {100 * r['glued']:7.3f}% "
                  f"{r['cjk_spaces_per_1000']:9.2f} {r['letter_spaced_runs']:8d}")
        print(f"pdftotext: {ref['pages_per_s']:.1f} pages/s (whole process per file)")


if __name__ == "__main__":
    sys.exit(main())
