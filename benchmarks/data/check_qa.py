"""Validate the dev QA sets against their corpora: debian_qa.jsonl (HTML) and pdf_qa.jsonl (PDF manuals).

Usage: python benchmarks/data/check_qa.py [QA_FILE ...] [--corpus DIR] [--assign-splits]

With no QA_FILE both sets of this folder are checked. For each: schema via kb_assistant.evaluation.qa,
unique ids, kind/lang/source consistency, evidence length (5-25 words, or 8-40 CJK characters), that
no question copies its evidence, that ``absent_terms`` of unanswerable items occur nowhere in the
corpus, the minimum count per kind, and the frozen tune/test split (every item has one; 30-50 % of
each kind is tune).

debian_qa.jsonl (Debian Administrator's Handbook, en-US/ and zh-CN/ HTML): every evidence snippet
occurs in the visible text of its source page (BeautifulSoup get_text without script/style).

pdf_qa.jsonl (PDF manuals in pdf/): every answerable item names its 1-based ``page``, and its evidence
occurs on that page as ``pdftotext`` gives it (inside one text block, so never across paragraphs or
table cells) and as pypdfium2 gives it (spaces between CJK characters removed, as the product does),
never in a running header/footer or a table-of-contents block; ``cross`` items carry
``answer_keywords_zh``. Absent terms are searched in the text of every PDF, from both engines.

Matching is NFKC, whitespace- and case-insensitive. ``--assign-splits`` first fills the missing
``split`` fields (see :func:`assign_splits`; existing splits never change). Exits 1 listing every
failure, 2 when a corpus or tool is missing. Fetch the corpora with scripts/get_debian_handbook.sh and
scripts/get_pdf_corpus.sh.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from kb_assistant.evaluation.metrics import normalize_for_match as norm  # noqa: E402
from kb_assistant.evaluation.qa import KINDS, QAItem, parse_qa_lines  # noqa: E402
from kb_assistant.storage_utils import atomic_write_text  # noqa: E402

QA_FILES = (HERE / "debian_qa.jsonl", HERE / "pdf_qa.jsonl")
TUNE_SHARE = 0.4  # share of each kind in the tune split; the rest is test
TUNE_SHARE_RANGE = (0.3, 0.5)  # what the check accepts per kind (kinds of >= 5 items)
_CJK_CHARS = "\u3400-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_CJK_GAP = re.compile(f"(?<=[{_CJK_CHARS}])[ \t]+(?=[{_CJK_CHARS}])")  # justified CJK lines
_DOT_LEADER = re.compile(r"(?:\. ?){4,}")
_LINE_HYPHEN = re.compile(r"[\ufffe\u00ad-][ \t]*\n[ \t]*")


def norm_spaced(text: str) -> str:
    """Like norm() but keeps single spaces, so short terms cannot match across word boundaries."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


# --- corpora -----------------------------------------------------------------------------------------


def page_text(path: Path) -> str:
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "lxml")
    for tag in soup(["script", "style"]):
        tag.decompose()
    return soup.get_text(" ")


class Corpus:
    """The handbook as HTML pages: en-US/*.html and zh-CN/*.html under ``root``."""

    expected = {  # kind -> (question lang, source prefixes)
        "en": ("en", ("en-US/",)),
        "zh": ("zh", ("zh-CN/",)),
        "cross": ("en", ("zh-CN/",)),
    }
    min_counts = {"en": 60, "zh": 50, "cross": 20, "unanswerable": 30}
    min_total = 160

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, str] = {}

    def raw(self, rel: str) -> str | None:
        if rel not in self._cache:
            path = self.root / rel
            if not path.is_file():
                return None
            self._cache[rel] = page_text(path)
        return self._cache[rel]

    def text(self, rel: str) -> str | None:
        raw = self.raw(rel)
        return None if raw is None else norm(raw)

    def all_pages(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob("*/*.html"))

    def source_rule(self, kind: str) -> str:
        return "under " + " or ".join(self.expected[kind][1])

    def is_cjk(self, source: str) -> bool:
        return source.startswith("zh-CN/")

    def item_problems(self, item: QAItem) -> list[str]:
        text = self.text(item.source)
        if text is None:
            return [f"source page {item.source} not found in {self.root}"]
        if norm(item.evidence) not in text:
            return [f"evidence not found in {item.source}: {item.evidence[:60]!r}"]
        return []

    def all_texts(self) -> Iterable[str]:
        return (self.raw(rel) or "" for rel in self.all_pages())


def poppler_pages(path: Path) -> list[str]:
    """Page texts as ``pdftotext`` (poppler, default layout) gives them; blocks end in a blank line."""
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    pages = out.stdout.decode("utf-8").split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def pdfium_pages(path: Path) -> list[str]:
    """Page texts as pypdfium2 gives them, spaces between CJK characters removed (as the product does)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    try:
        pages = []
        for index in range(len(doc)):
            page = doc[index]
            textpage = page.get_textpage()
            pages.append(_CJK_GAP.sub("", textpage.get_text_range()))
            textpage.close()
            page.close()
        return pages
    finally:
        doc.close()


def furniture_lines(pages: Sequence[str]) -> set[str]:
    """Running headers/footers: first or last lines of a page that recur on another page (digits dropped)."""
    seen: collections.Counter[str] = collections.Counter()
    for page in pages:
        lines = [line for line in page.splitlines() if line.strip()]
        seen.update({_no_digits(line) for line in lines[:1] + lines[-1:]})
    return {line for line, n in seen.items() if line and n >= 2}


def _no_digits(text: str) -> str:
    return norm(re.sub(r"\d+", "", text))


class PdfCorpus:
    """PDF manuals in ``root``; ``source`` is the file name, ``page`` the 1-based page."""

    expected = {  # kind -> (question lang, PDFs that hold the answers)
        "en": ("en", ("maint-guide.en.pdf", "debian-faq.en.pdf", "developers-reference.pdf")),
        "zh": ("zh", ("maint-guide.zh-cn.pdf", "debian-edu-manual.zh-cn.pdf")),
        "cross": ("en", ("debian-edu-manual.zh-cn.pdf",)),  # Chinese only: no English twin in the corpus
    }
    min_counts = {"en": 45, "zh": 30, "cross": 20, "unanswerable": 30}
    min_total = 125

    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cache  # noqa: B019 - one corpus object per run
    def pages(self, name: str, engine: str) -> tuple[str, ...]:
        path = self.root / name
        return tuple(poppler_pages(path) if engine == "pdftotext" else pdfium_pages(path))

    @functools.cache  # noqa: B019
    def furniture(self, name: str) -> frozenset[str]:
        return frozenset(furniture_lines(self.pages(name, "pypdfium2")))

    def source_rule(self, kind: str) -> str:
        return "among " + ", ".join(self.expected[kind][1])

    def is_cjk(self, source: str) -> bool:
        return ".zh-cn." in source

    def item_problems(self, item: QAItem) -> list[str]:
        problems = []
        if item.kind == "cross" and not item.answer_keywords_zh:
            problems.append("cross items need answer_keywords_zh (the Chinese keywords)")
        if not (self.root / item.source).is_file():
            return [*problems, f"source {item.source} not found in {self.root}"]
        poppler, pdfium = self.pages(item.source, "pdftotext"), self.pages(item.source, "pypdfium2")
        if len(poppler) != len(pdfium):
            problems.append(f"{item.source}: pdftotext gives {len(poppler)} pages, pypdfium2 {len(pdfium)}")
        if item.page is None or not 1 <= item.page <= len(pdfium):
            return [*problems, f"needs a 'page' between 1 and {len(pdfium)} (got {item.page})"]
        evidence, where = norm(item.evidence), f"page {item.page} of {item.source}"
        blocks = re.split(r"\n[ \t]*\n", poppler[item.page - 1])
        block = next((b for b in blocks if evidence in norm(b)), None)
        if block is None:
            found = [n for n, page in enumerate(poppler, 1) if evidence in norm(page)]
            detail = "spans several text blocks" if item.page in found else (
                f"not found (it is on page {', '.join(map(str, found))})" if found else "not found")
            problems.append(f"evidence {detail} on {where} (pdftotext): {item.evidence[:60]!r}")
        elif _DOT_LEADER.search(block):
            problems.append(f"evidence is in a table-of-contents block of {where}")
        if evidence not in norm(pdfium[item.page - 1]):
            problems.append(f"evidence not found on {where} (pypdfium2): {item.evidence[:60]!r}")
        if any(_no_digits(item.evidence) in line for line in self.furniture(item.source)):
            problems.append(f"evidence is a running header/footer of {item.source}")
        return problems

    def all_texts(self) -> Iterable[str]:
        for path in sorted(self.root.glob("*.pdf")):
            for engine in ("pdftotext", "pypdfium2"):
                for page in self.pages(path.name, engine):
                    yield page
                    yield _LINE_HYPHEN.sub("", page)  # words split over two lines


class TermIndex:
    """Finds terms in a corpus: Latin terms as whole spaced text, CJK terms with all whitespace removed."""

    def __init__(self, texts: Iterable[str]) -> None:
        raw = list(texts)
        self.spaced = "\n".join(norm_spaced(t) for t in raw)
        self.compact = "\n".join(norm(t) for t in raw)

    def __contains__(self, term: str) -> bool:
        return norm_spaced(term) in self.spaced or bool(_CJK.search(term) and norm(term) in self.compact)


# --- checks ------------------------------------------------------------------------------------------


def split_problems(items: Sequence[QAItem]) -> list[str]:
    """Every item is in the tune or the test split, and each kind is split about TUNE_SHARE / rest."""
    missing = sum(item.split is None for item in items)
    failures = [f"{missing} item(s) without a 'split' (run check_qa.py --assign-splits)"] if missing else []
    lo, hi = TUNE_SHARE_RANGE
    for kind in KINDS:
        group = [item for item in items if item.kind == kind and item.split is not None]
        tune = sum(item.split == "tune" for item in group)
        if len(group) >= 5 and not lo <= tune / len(group) <= hi:
            failures.append(f"kind {kind!r}: {tune} of {len(group)} items are in the tune split "
                            f"(want {lo:.0%}-{hi:.0%})")
    return failures


def check(qa_path: Path, corpus: Corpus | PdfCorpus) -> tuple[list[str], collections.Counter]:
    lines = qa_path.read_text(encoding="utf-8").splitlines()
    items, failures = parse_qa_lines(lines, name=qa_path.name)
    counts: collections.Counter = collections.Counter(item.kind for item in items)
    unanswerable_langs = {item.lang for item in items if not item.answerable}
    terms: TermIndex | None = None
    for item in items:
        where = f"{item.id}"
        if item.answerable:
            lang, prefixes = corpus.expected[item.kind]
            if item.lang != lang:
                failures.append(f"{where}: kind {item.kind!r} needs lang {lang!r}")
            if not item.source.startswith(prefixes):
                failures.append(f"{where}: kind {item.kind!r} needs a source {corpus.source_rule(item.kind)}")
            if not item.answer_keywords:
                failures.append(f"{where}: answer_keywords is empty")
            if not item.answer:
                failures.append(f"{where}: answer is missing")
            if corpus.is_cjk(item.source):
                n_cjk = len(_CJK.findall(item.evidence))
                if not 8 <= n_cjk <= 40:
                    failures.append(f"{where}: evidence has {n_cjk} CJK chars (want 8-40)")
            else:
                n_words = len(item.evidence.split())
                if not 5 <= n_words <= 25:
                    failures.append(f"{where}: evidence has {n_words} words (want 5-25)")
            failures.extend(f"{where}: {problem}" for problem in corpus.item_problems(item))
            if norm(item.evidence) in norm(item.question):
                failures.append(f"{where}: question copies the evidence verbatim")
        elif item.absent_terms:
            if terms is None:
                terms = TermIndex(corpus.all_texts())
            for term in item.absent_terms:
                if term in terms:
                    failures.append(f"{where}: absent term {term!r} does occur in the corpus")
    for kind, minimum in corpus.min_counts.items():
        if counts[kind] < minimum:
            failures.append(f"only {counts[kind]} {kind!r} items (want >= {minimum})")
    if sum(counts.values()) < corpus.min_total:
        failures.append(f"only {sum(counts.values())} items (want >= {corpus.min_total})")
    if unanswerable_langs != {"en", "zh"}:
        failures.append(f"unanswerable items must cover en and zh (have {sorted(unanswerable_langs)})")
    failures.extend(split_problems(items))
    return failures, counts


def assign_splits(path: Path, share: float = TUNE_SHARE) -> int:
    """Write a ``split`` into every record of ``path`` that has none; returns how many were written.

    Per kind and language, the records without a split are taken in the order of sha256(id) and the
    first ones go to ``tune`` until that group's tune share is closest to ``share``, the rest to ``test``
    (deterministic, and stratified by kind; by language too for unanswerable questions). Records
    that have a split keep it and every other line stays byte-identical, so the split is frozen.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    records: dict[int, dict] = {}
    for index, line in enumerate(lines):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue  # reported by the check
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            records[index] = record
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for index, record in records.items():
        groups[(str(record.get("kind")), str(record.get("lang")))].append(index)
    written = 0
    for indexes in groups.values():
        todo = sorted((i for i in indexes if "split" not in records[i]),
                      key=lambda i: hashlib.sha256(records[i]["id"].encode("utf-8")).hexdigest())
        have = sum(records[i].get("split") == "tune" for i in indexes)
        n_tune = max(0, min(len(todo), round(share * len(indexes)) - have))
        for rank, index in enumerate(todo):
            records[index]["split"] = "tune" if rank < n_tune else "test"
            lines[index] = json.dumps(records[index], ensure_ascii=False)
            written += 1
    if written:
        atomic_write_text(path, "\n".join(lines) + "\n")
    return written


def open_corpus(qa_path: Path, root: Path) -> tuple[Corpus | PdfCorpus | None, str]:
    """The corpus a QA file is checked against (PDF when its sources are .pdf files), or why not."""
    text = qa_path.read_text(encoding="utf-8") if qa_path.is_file() else ""
    if re.search(r'"source":\s*"[^"]+\.pdf"', text):
        pdf_root = root / "pdf" if (root / "pdf").is_dir() else root
        if not any(pdf_root.glob("*.pdf")):
            return None, f"PDF corpus not found in {pdf_root}: run scripts/get_pdf_corpus.sh"
        if shutil.which("pdftotext") is None:
            return None, "pdftotext not found: install poppler-utils"
        if importlib.util.find_spec("pypdfium2") is None:
            return None, "pypdfium2 not installed: pip install pypdfium2"
        return PdfCorpus(pdf_root), ""
    if not (root / "en-US").is_dir() or not (root / "zh-CN").is_dir():
        return None, f"corpus not found in {root}: run scripts/get_debian_handbook.sh"
    return Corpus(root), ""


def summary(qa_path: Path, items_counts: collections.Counter) -> str:
    by_split: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    sources = set()
    for line in qa_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError:
            continue
        by_split[str(record.get("split"))][record.get("kind")] += 1
        if record.get("source"):
            sources.add((record["source"], record.get("page")))
    kinds = ", ".join(f"{k}={items_counts[k]}" for k in KINDS)
    splits = "; ".join(f"{split}: " + " ".join(f"{k}={c[k]}" for k in KINDS)
                       for split, c in sorted(by_split.items()))
    return (f"{qa_path.name}: {sum(items_counts.values())} items ({kinds}); {len(sources)} distinct source "
            f"pages\n  splits {splits}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qa", nargs="*", type=Path, default=list(QA_FILES), help="QA files (default: both)")
    parser.add_argument("--corpus", type=Path, default=REPO / "benchmarks" / ".corpus",
                        help="folder holding en-US/ and zh-CN/ (scripts/get_debian_handbook.sh) and pdf/ "
                             "(scripts/get_pdf_corpus.sh)")
    parser.add_argument("--assign-splits", action="store_true",
                        help="first write a tune/test split into records that have none")
    args = parser.parse_args(argv)
    status = 0
    for qa_path in args.qa:
        corpus, why = open_corpus(qa_path, args.corpus)
        if corpus is None:
            print(f"{qa_path.name}: {why}", file=sys.stderr)
            status = 2
            continue
        if args.assign_splits:
            print(f"{qa_path.name}: wrote {assign_splits(qa_path)} split(s)")
        failures, counts = check(qa_path, corpus)
        print(summary(qa_path, counts))
        if failures:
            print(f"{len(failures)} failure(s):")
            for failure in failures:
                print(f"  {failure}")
            status = max(status, 1)
        else:
            print("all checks passed")
    return status


if __name__ == "__main__":
    sys.exit(main())
