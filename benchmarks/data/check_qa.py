"""Validate benchmarks/data/debian_qa.jsonl against the Debian Administrator's Handbook HTML.

Usage: python benchmarks/data/check_qa.py [QA_FILE] [--corpus DIR]

Checks every line (schema via kb_assistant.evaluation.qa, unique ids), kind/lang/source consistency
(en -> en-US page, zh -> zh-CN page, cross -> English question over a zh-CN page), evidence length
(5-25 words, or 8-40 CJK characters), that every evidence snippet occurs in the visible text of its
source page (BeautifulSoup get_text without script/style; whitespace-insensitive, case-insensitive),
that no question copies its evidence, that ``absent_terms`` of unanswerable items occur nowhere in
the corpus, and the minimum count per kind. Exits 1 listing every failure. Fetch the corpus first
with scripts/get_debian_handbook.sh.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import unicodedata
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from kb_assistant.evaluation.metrics import normalize_for_match as norm  # noqa: E402
from kb_assistant.evaluation.qa import parse_qa_lines  # noqa: E402

MIN_COUNTS = {"en": 60, "zh": 50, "cross": 20, "unanswerable": 30}
MIN_TOTAL = 160
EXPECTED = {  # kind -> (question lang, source prefix)
    "en": ("en", "en-US/"),
    "zh": ("zh", "zh-CN/"),
    "cross": ("en", "zh-CN/"),
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def norm_spaced(text: str) -> str:
    """Like norm() but keeps single spaces, so short terms cannot match across word boundaries."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def page_text(path: Path) -> str:
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "lxml")
    for tag in soup(["script", "style"]):
        tag.decompose()
    return soup.get_text(" ")


class Corpus:
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


def check(qa_path: Path, corpus: Corpus) -> tuple[list[str], collections.Counter]:
    lines = qa_path.read_text(encoding="utf-8").splitlines()
    items, failures = parse_qa_lines(lines, name=qa_path.name)
    counts: collections.Counter = collections.Counter(item.kind for item in items)
    unanswerable_langs = {item.lang for item in items if not item.answerable}
    all_text: str | None = None
    for item in items:
        where = f"{item.id}"
        if item.answerable:
            lang, prefix = EXPECTED[item.kind]
            if item.lang != lang:
                failures.append(f"{where}: kind {item.kind!r} needs lang {lang!r}")
            if not item.source.startswith(prefix):
                failures.append(f"{where}: kind {item.kind!r} needs a source under {prefix}")
            if not item.answer_keywords:
                failures.append(f"{where}: answer_keywords is empty")
            if not item.answer:
                failures.append(f"{where}: answer is missing")
            if item.source.startswith("zh-CN/"):
                n_cjk = len(_CJK.findall(item.evidence))
                if not 8 <= n_cjk <= 40:
                    failures.append(f"{where}: evidence has {n_cjk} CJK chars (want 8-40)")
            else:
                n_words = len(item.evidence.split())
                if not 5 <= n_words <= 25:
                    failures.append(f"{where}: evidence has {n_words} words (want 5-25)")
            text = corpus.text(item.source)
            if text is None:
                failures.append(f"{where}: source page {item.source} not found in {corpus.root}")
            elif norm(item.evidence) not in text:
                failures.append(f"{where}: evidence not found in {item.source}: {item.evidence[:60]!r}")
            if norm(item.evidence) in norm(item.question):
                failures.append(f"{where}: question copies the evidence verbatim")
        elif item.absent_terms:
            if all_text is None:
                all_text = "\n".join(norm_spaced(corpus.raw(rel) or "") for rel in corpus.all_pages())
            for term in item.absent_terms:
                if norm_spaced(term) in all_text:
                    failures.append(f"{where}: absent term {term!r} does occur in the corpus")
    for kind, minimum in MIN_COUNTS.items():
        if counts[kind] < minimum:
            failures.append(f"only {counts[kind]} {kind!r} items (want >= {minimum})")
    if sum(counts.values()) < MIN_TOTAL:
        failures.append(f"only {sum(counts.values())} items (want >= {MIN_TOTAL})")
    if unanswerable_langs != {"en", "zh"}:
        failures.append(f"unanswerable items must cover en and zh (have {sorted(unanswerable_langs)})")
    return failures, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qa", nargs="?", type=Path, default=HERE / "debian_qa.jsonl")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=REPO / "benchmarks" / ".corpus",
        help="folder holding en-US/ and zh-CN/ (scripts/get_debian_handbook.sh)",
    )
    args = parser.parse_args(argv)
    if not (args.corpus / "en-US").is_dir() or not (args.corpus / "zh-CN").is_dir():
        print(f"corpus not found in {args.corpus}: run scripts/get_debian_handbook.sh", file=sys.stderr)
        return 2
    failures, counts = check(args.qa, Corpus(args.corpus))
    sources = collections.Counter()
    for line in args.qa.read_text(encoding="utf-8").splitlines():
        m = re.search(r'"source": "([^"]+)"', line)
        if m:
            sources[m.group(1)] += 1
    summary = ", ".join(f"{k}={counts[k]}" for k in MIN_COUNTS)
    print(f"{args.qa.name}: {sum(counts.values())} items ({summary}); {len(sources)} distinct source pages")
    if failures:
        print(f"{len(failures)} failure(s):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
