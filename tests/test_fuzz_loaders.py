"""A fuzz corpus for every loader (#16 item 9): seeded mutants of real PDF, DOCX, XLSX, PPTX, HTML, EML,
TXT, Markdown, JSON and CSV files, parsed as ``kb ingest`` parses them (the parser process, the default
limits). Each mutant must load or fail with a LoaderError (a parser crash counts as one: the parser
process dies, not the caller), never hang past the time budget, and stay within the memory budget.

Mutations: bit flips, byte runs inserted, deleted or duplicated, truncation, splicing two files, and for
the Office formats the same inside the zip (XML mutated, then re-zipped), where the parsers really look.
The budget is small by default (CI); ``KB_FUZZ_MUTANTS=200`` runs 200 mutants per format.
"""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
from pathlib import Path

import fixtures_files as F
import hostile_files as H
import pytest

from kb_assistant.errors import LoaderError
from kb_assistant.loaders import load_file
from kb_assistant.loaders.limits import ParseLimits

MUTANTS = int(os.environ.get("KB_FUZZ_MUTANTS", "12"))
LIMITS = ParseLimits(isolate=True, timeout_s=30.0, memory_mb=1024.0)


def _seeds(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "pdf": F.make_pdf(folder / "seed.pdf", ["Annual leave is 25 days.", "The VPN port is 1194."],
                          title="Handbook", headings=["Leave", "VPN"]),
        "docx": F.make_docx(folder / "seed.docx", [("h1", "Leave"), ("p", "Employees get 25 days."),
                                                   ("table", [["Type", "Days"], ["Wedding", "3"]])]),
        "xlsx": F.make_xlsx(folder / "seed.xlsx", {"People": [["Name", "Dept"], ["Alice", "HR"]],
                                                   "Rooms": [["Room", "Floor"], ["301", 3]]}),
        "pptx": F.make_pptx(folder / "seed.pptx", [{"title": "Intro", "bullets": ["Robots"], "notes": "n"}]),
        "html": F.make_html(folder / "seed.html"),
        "eml": F.make_eml(folder / "seed.eml", attachments={"a.txt": b"attached"}),
        "txt": F.make_text(folder / "seed.txt", "Plain text. 年假十五天。\nSecond line."),
        "md": F.make_text(folder / "seed.md", "# Title\n\nBody text.\n\n## Part\n\n- item\n"),
        "json": F.make_text(folder / "seed.json", '{"user": {"name": "Al", "tags": ["a", "b"]}, "n": 3}'),
        "csv": F.make_text(folder / "seed.csv", "name,dept\nalice,hr\nbob,it\n"),
    }


def mutate(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """One to four random edits of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out += rng.randbytes(8)
        kind = rng.randrange(7)
        pos = rng.randrange(len(out))
        if kind == 0:  # bit flips
            for _ in range(rng.randint(1, 16)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # insert random bytes or a "magic" run
            run = rng.choice([rng.randbytes(rng.randint(1, 64)), b"\xff" * 32, b"\x00" * 64, b"<" * 50,
                              b"99999999999", b"-1", b"obj <<", b"<w:p>" * 20])
            out[pos:pos] = run
        elif kind == 2:  # delete a run
            del out[pos:pos + rng.randint(1, 256)]
        elif kind == 3:  # duplicate a run many times
            run = bytes(out[pos:pos + rng.randint(1, 64)])
            out[pos:pos] = run * rng.randint(2, 200)
        elif kind == 4:  # truncate
            del out[pos:]
        elif kind == 5:  # splice with another file
            cut = rng.randrange(len(other) or 1)
            out[pos:] = other[cut:]
        else:  # overwrite a number-looking byte with another digit
            digits = [i for i, b in enumerate(out) if 48 <= b <= 57]
            if digits:
                out[rng.choice(digits)] = rng.choice(b"0123456789")
    return bytes(out)


def mutate_zip(data: bytes, rng: random.Random) -> bytes:
    """Mutate one XML member of an Office file and zip it again (the parsers then see real XML damage)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        members = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    xml = [n for n in members if n.endswith(".xml")]
    name = rng.choice(xml)
    members[name] = mutate(members[name], rng, members[rng.choice(xml)])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for member, content in members.items():
            zout.writestr(member, content)
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seeds(tmp_path_factory.mktemp("seeds"))


@pytest.mark.parametrize("fmt", ["pdf", "docx", "xlsx", "pptx", "html", "eml", "txt", "md", "json", "csv"])
def test_mutants_only_ever_fail_with_a_loader_error(seeds, fmt, tmp_path):
    rng = random.Random(f"kb-fuzz-{fmt}")
    data = seeds[fmt].read_bytes()
    others = [p.read_bytes() for p in seeds.values()]
    outcomes = {"loaded": 0, "refused": 0, "crashed": 0}
    with H.PeakRSS() as rss:
        for i in range(MUTANTS):
            inside = fmt in ("docx", "xlsx", "pptx") and i % 2 == 0
            mutant = mutate_zip(data, rng) if inside else mutate(data, rng, rng.choice(others))
            path = tmp_path / f"m{i}.{fmt}"
            path.write_bytes(mutant)
            t0 = time.perf_counter()
            try:
                load_file(path, limits=LIMITS)
                outcomes["loaded"] += 1
            except LoaderError as exc:
                reason = str(exc)
                assert reason and "\n" not in reason, reason
                outcomes["crashed" if "the parser crashed" in reason else "refused"] += 1
            elapsed = time.perf_counter() - t0
            assert elapsed < LIMITS.timeout_s + 15, f"mutant {i} of {fmt} took {elapsed:.1f} s"
            path.unlink()
    assert rss.peak_mb < 500, f"this process grew by {rss.peak_mb:.0f} MB"
    assert sum(outcomes.values()) == MUTANTS
    print(f"fuzz {fmt}: {MUTANTS} mutants, {outcomes}, this process +{rss.peak_mb:.0f} MB")
