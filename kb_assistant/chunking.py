"""CJK-aware, sentence-aware chunking measured with the embedder's own tokenizer.

Documents are cut into sentence units (ASCII and CJK end marks: . ! ? ; 。！？；, and line breaks); units
are packed greedily up to the token budget with an overlap of whole sentences. A sentence is only cut
when it alone exceeds the budget. Chunks never span two pages, so every chunk has one page to cite.
The final embedded text of each chunk is re-counted, so no chunk is ever silently truncated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ChunkingConfig
from .text import CJK_RE, detect_lang, iter_sentence_spans, trim_span
from .types import Chunk, Document

CountFn = Callable[[Sequence[str]], list[int]]

_CARRIED = ("page", "title", "heading", "section", "file_type", "sheet", "slide", "ocr")


def make_doc_id(normalised_path: str) -> str:
    return hashlib.sha256(normalised_path.encode("utf-8")).hexdigest()[:16]


def make_chunk_id(doc_id: str, position: int, text: str) -> str:
    digest = hashlib.sha256(f"{doc_id}\x00{position}\x00{text}".encode()).hexdigest()
    return digest[:32]


#: characters of text per tokenizer call (the tokenizer's memory grows with what one call sees)
BATCH_CHARS = 256 * 1024
#: texts per tokenizer call
BATCH_TEXTS = 4096
#: the smallest length above which a unit is cut before counting (see ``Chunker.max_unit_chars``)
MIN_UNIT_CHARS = 16 * 1024
#: token counts of texts up to this length are remembered, up to ``MEMO_SIZE`` of them
MEMO_CHARS = 64
MEMO_SIZE = 100_000


@dataclass(slots=True)
class _Unit:
    doc: int
    start: int
    end: int
    tokens: int
    #: a piece of a unit longer than ``Chunker.max_unit_chars``
    cut: bool = False


class Chunker:
    """Cuts a file's documents into chunks for one embedder (``count_tokens`` and ``max_tokens``).

    Linear in time and bounded in memory for any input: units are counted in batches of at most
    :data:`BATCH_CHARS` characters, and a unit longer than :attr:`max_unit_chars` (a line of megabytes
    without a sentence end) is first cut at whitespace into pieces of that size, so no tokenizer call
    ever sees more than a batch. Units are streamed from the text, never all held at once.
    """

    def __init__(self, config: ChunkingConfig, count_tokens: CountFn, max_tokens: int) -> None:
        self.config = config
        self.count = count_tokens
        self.overhead = count_tokens([""])[0]  # specials / prefix the model adds to every text
        self.limit = min(config.chunk_tokens, max_tokens)
        if self.limit - self.overhead < 8:
            raise ValueError(f"chunk budget {self.limit} leaves no room for text")
        #: longer units are cut before counting: 32 characters a token is far above any prose (about 4
        #: for English, 1.5 for Chinese), so only lines that no sentence splitter can cut are affected
        self.max_unit_chars = max(MIN_UNIT_CHARS, 32 * (self.limit - self.overhead))
        self._memo: dict[str, int] = {}

    def _header(self, meta: dict[str, Any]) -> str:
        if not self.config.embed_headings:
            return ""
        parts = [p for p in (meta.get("title"), meta.get("heading")) if p]
        if len(parts) == 2 and parts[0] == parts[1]:
            parts = parts[:1]
        header = " > ".join(str(p).strip() for p in parts)[:200]
        return header + "\n" if header else ""

    def count_all(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts``, in batches of at most :data:`BATCH_CHARS` characters; short texts
        are remembered (a document repeating "a. " a million times costs one call per batch)."""
        out: list[int] = []
        batch: list[str] = []
        size = 0
        for text in texts:
            if batch and (size + len(text) > BATCH_CHARS or len(batch) >= BATCH_TEXTS):
                out.extend(self._count_batch(batch))
                batch, size = [], 0
            batch.append(text)
            size += len(text)
        if batch:
            out.extend(self._count_batch(batch))
        return out

    def _count_batch(self, texts: list[str]) -> list[int]:
        memo = self._memo
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        fresh = dict(zip(todo, self.count(todo), strict=True)) if todo else {}
        out = [fresh[t] if t in fresh else memo[t] for t in texts]
        if len(memo) > MEMO_SIZE:
            memo.clear()
        memo.update((t, n) for t, n in fresh.items() if len(t) <= MEMO_CHARS)
        return out

    def _spans(self, text: str) -> Iterator[tuple[int, int, bool]]:
        """Sentence units of ``text`` as (start, end, cut): those over :attr:`max_unit_chars` are cut at
        whitespace first (``cut`` True)."""
        for s, e in iter_sentence_spans(text):
            if e - s <= self.max_unit_chars:
                yield s, e, False
            else:
                for piece in _cut_span(text, s, e, self.max_unit_chars):
                    yield *piece, True

    def _units(self, documents: Sequence[Document]) -> Iterator[_Unit]:
        for di, doc in enumerate(documents):
            text = doc.text
            batch: list[tuple[int, int, bool]] = []
            size = 0
            for span in self._spans(text):
                batch.append(span)
                size += span[1] - span[0]
                if size >= BATCH_CHARS or len(batch) >= BATCH_TEXTS:
                    yield from self._counted(di, text, batch)
                    batch, size = [], 0
            if batch:
                yield from self._counted(di, text, batch)

    def _counted(self, di: int, text: str, spans: list[tuple[int, int, bool]]) -> Iterator[_Unit]:
        counts = self.count_all([text[s:e] for s, e, _ in spans])
        for (s, e, cut), n in zip(spans, counts, strict=True):
            yield _Unit(di, s, e, max(n - self.overhead, 1), cut)

    def chunk(self, documents: Sequence[Document], doc_id: str) -> list[Chunk]:
        texts = [d.text for d in documents]
        headers = [self._header(d.metadata) for d in documents]
        header_costs = [max(n - self.overhead, 0) if h else 0
                        for h, n in zip(headers, self.count_all(headers), strict=True)]
        pending: list[tuple[str, dict[str, Any]]] = []
        for group in self._pack(self._units(documents), documents, header_costs):
            text = self._render(group, texts)
            meta = {k: documents[group[0].doc].metadata[k] for k in _CARRIED
                    if documents[group[0].doc].metadata.get(k) is not None}
            pending.append((text, meta))
        # verify: the embedded text (header + body) must fit; split anything that does not
        final: list[tuple[str, dict[str, Any], str, int]] = []
        while pending:
            embed_texts = [self._header(m) + t for t, m in pending]
            counts = self.count_all(embed_texts)
            retry: list[tuple[str, dict[str, Any]]] = []
            for (text, meta), etext, n in zip(pending, embed_texts, counts, strict=True):
                if n <= self.limit or len(text) < 2:
                    final.append((text, meta, etext, n))
                else:
                    cut = _split_point(text)
                    retry.extend([(text[:cut].strip(), meta), (text[cut:].strip(), meta)])
            pending = [(t, m) for t, m in retry if t]
        min_tokens = self.config.min_chunk_tokens
        chunks: list[Chunk] = []
        for position, (text, meta, etext, n) in enumerate(
            item for item in final if item[3] - self.overhead >= min_tokens or len(final) == 1
        ):
            meta = dict(meta, lang=detect_lang(text))
            chunks.append(Chunk(chunk_id=make_chunk_id(doc_id, position, text), doc_id=doc_id,
                                position=position, text=text, metadata=meta, n_tokens=n,
                                embed_text=etext))
        return chunks

    def _pack(self, units: Iterable[_Unit], documents: Sequence[Document],
              header_costs: list[int]) -> Iterator[list[_Unit]]:
        budget = self.limit - self.overhead
        current: list[_Unit] = []
        size = chars = 0

        def page_of(u: _Unit) -> Any:
            return documents[u.doc].metadata.get("page")

        for unit in self._split_long_units(units, documents):
            header_cost = header_costs[current[0].doc if current else unit.doc]
            new_page = bool(current) and page_of(unit) != page_of(current[0])
            # the character cap only binds text of a token or more per 32 characters (one long "word")
            too_long = chars + unit.end - unit.start > self.max_unit_chars
            if current and (new_page or too_long or size + unit.tokens + header_cost > budget):
                yield current
                current, size = ([], 0) if new_page or too_long else self._overlap(current)
                chars = sum(u.end - u.start for u in current)
            current.append(unit)
            size += unit.tokens
            chars += unit.end - unit.start
        if current:
            yield current

    def _overlap(self, group: list[_Unit]) -> tuple[list[_Unit], int]:
        carried: list[_Unit] = []
        size = 0
        for unit in reversed(group[1:]):
            if size + unit.tokens > self.config.overlap_tokens:
                break
            carried.insert(0, unit)
            size += unit.tokens
        return carried, size

    def _split_long_units(self, units: Iterable[_Unit], documents: Sequence[Document]) -> Iterator[_Unit]:
        budget = (self.limit - self.overhead) * 3 // 4
        for unit in units:
            if unit.tokens <= budget:
                yield unit
            elif unit.cut:  # a piece of an over-long line: cut to size in one pass, then bisect the rest
                text = documents[unit.doc].text
                parts = list(_cut_span(text, unit.start, unit.end,
                                       max((unit.end - unit.start) * budget // (unit.tokens * 2), 2)))
                counts = self.count_all([text[s:e] for s, e in parts])
                for (s, e), n in zip(parts, counts, strict=True):
                    yield from self._bisect(unit.doc, text, s, e, max(n - self.overhead, 1), budget)
            else:
                yield from self._bisect(unit.doc, documents[unit.doc].text, unit.start, unit.end,
                                        unit.tokens, budget)

    def _bisect(self, doc: int, text: str, start: int, end: int, tokens: int, budget: int) -> Iterator[_Unit]:
        """Halve ``text[start:end]`` near its middle until every part fits ``budget`` tokens."""
        stack = [(start, end, tokens)]
        while stack:
            s, e, n = stack.pop()
            if n <= budget or e - s < 2:
                yield _Unit(doc, s, e, n)
                continue
            cut = s + _split_point(text[s:e])
            left, right = (s, cut), (cut, e)
            nl, nr = (max(c - self.overhead, 1) for c in self.count([text[left[0]:left[1]],
                                                                    text[right[0]:right[1]]]))
            stack.append((right[0], right[1], nr))
            stack.append((left[0], left[1], nl))

    @staticmethod
    def _render(group: list[_Unit], texts: Sequence[str]) -> str:
        parts: list[str] = []
        run_doc, run_start, run_end = group[0].doc, group[0].start, group[0].end
        for unit in group[1:]:
            if unit.doc == run_doc and unit.start >= run_end:
                run_end = unit.end
            else:
                parts.append(texts[run_doc][run_start:run_end])
                run_doc, run_start, run_end = unit.doc, unit.start, unit.end
        parts.append(texts[run_doc][run_start:run_end])
        return "\n".join(p.strip() for p in parts)


def _cut_span(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Cut ``text[start:end]`` into whitespace-trimmed pieces of at most ``size`` characters, at the last
    whitespace (or CJK character) of each window's final quarter, else hard at ``size``."""
    while end - start > size:
        cut = start + size
        low = start + size * 3 // 4
        pos = cut
        while pos > low and not (text[pos].isspace() or CJK_RE.match(text[pos - 1])):
            pos -= 1
        cut = pos if pos > low else cut
        piece = trim_span(text, start, cut)
        if piece is not None:
            yield piece
        start = cut
    piece = trim_span(text, start, end)
    if piece is not None:
        yield piece


def _split_point(text: str) -> int:
    """A cut near the middle of ``text``, at whitespace or between CJK characters when possible."""
    mid = len(text) // 2
    for offset in range(0, max(mid, 1)):
        for pos in (mid + offset, mid - offset):
            if 0 < pos < len(text) and (text[pos].isspace() or CJK_RE.match(text[pos - 1])):
                return pos
    return max(mid, 1)
