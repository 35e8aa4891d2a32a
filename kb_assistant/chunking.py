"""CJK-aware, sentence-aware chunking measured with the embedder's own tokenizer.

Documents are cut into sentence units (ASCII and CJK end marks: . ! ? ; 。！？；, and line breaks); units
are packed greedily up to the token budget with an overlap of whole sentences. A sentence is only cut
when it alone exceeds the budget. Chunks never span two pages, so every chunk has one page to cite.
The final embedded text of each chunk is re-counted, so no chunk is ever silently truncated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ChunkingConfig
from .text import CJK_RE, detect_lang, sentence_spans
from .types import Chunk, Document

CountFn = Callable[[Sequence[str]], list[int]]

_CARRIED = ("page", "title", "heading", "section", "file_type", "sheet", "slide", "ocr")


def make_doc_id(normalised_path: str) -> str:
    return hashlib.sha256(normalised_path.encode("utf-8")).hexdigest()[:16]


def make_chunk_id(doc_id: str, position: int, text: str) -> str:
    digest = hashlib.sha256(f"{doc_id}\x00{position}\x00{text}".encode()).hexdigest()
    return digest[:32]


@dataclass
class _Unit:
    doc: int
    start: int
    end: int
    tokens: int


class Chunker:
    """Cuts a file's documents into chunks for one embedder (``count_tokens`` and ``max_tokens``)."""

    def __init__(self, config: ChunkingConfig, count_tokens: CountFn, max_tokens: int) -> None:
        self.config = config
        self.count = count_tokens
        self.overhead = count_tokens([""])[0]  # specials / prefix the model adds to every text
        self.limit = min(config.chunk_tokens, max_tokens)
        if self.limit - self.overhead < 8:
            raise ValueError(f"chunk budget {self.limit} leaves no room for text")

    def _header(self, meta: dict[str, Any]) -> str:
        if not self.config.embed_headings:
            return ""
        parts = [p for p in (meta.get("title"), meta.get("heading")) if p]
        if len(parts) == 2 and parts[0] == parts[1]:
            parts = parts[:1]
        header = " > ".join(str(p).strip() for p in parts)[:200]
        return header + "\n" if header else ""

    def chunk(self, documents: Sequence[Document], doc_id: str) -> list[Chunk]:
        texts = [d.text for d in documents]
        units: list[_Unit] = []
        raw: list[tuple[int, int, int]] = []
        for di, text in enumerate(texts):
            raw.extend((di, s, e) for s, e in sentence_spans(text))
        counts = self.count([texts[d][s:e] for d, s, e in raw]) if raw else []
        for (d, s, e), n in zip(raw, counts, strict=True):
            units.append(_Unit(d, s, e, max(n - self.overhead, 1)))

        headers = [self._header(d.metadata) for d in documents]
        header_costs = [max(n - self.overhead, 0) if h else 0
                        for h, n in zip(headers, self.count(headers), strict=True)]
        groups = self._pack(units, documents, header_costs)
        chunks: list[Chunk] = []
        pending: list[tuple[str, dict[str, Any]]] = []
        for group in groups:
            text = self._render(group, texts)
            meta = {k: documents[group[0].doc].metadata[k] for k in _CARRIED
                    if documents[group[0].doc].metadata.get(k) is not None}
            pending.append((text, meta))
        # verify: the embedded text (header + body) must fit; split anything that does not
        final: list[tuple[str, dict[str, Any], str, int]] = []
        while pending:
            embed_texts = [self._header(m) + t for t, m in pending]
            counts = self.count(embed_texts)
            retry: list[tuple[str, dict[str, Any]]] = []
            for (text, meta), etext, n in zip(pending, embed_texts, counts, strict=True):
                if n <= self.limit or len(text) < 2:
                    final.append((text, meta, etext, n))
                else:
                    cut = _split_point(text)
                    retry.extend([(text[:cut].strip(), meta), (text[cut:].strip(), meta)])
            pending = [(t, m) for t, m in retry if t]
        min_tokens = self.config.min_chunk_tokens
        for position, (text, meta, etext, n) in enumerate(
            item for item in final if item[3] - self.overhead >= min_tokens or len(final) == 1
        ):
            meta = dict(meta, lang=detect_lang(text))
            chunks.append(Chunk(chunk_id=make_chunk_id(doc_id, position, text), doc_id=doc_id,
                                position=position, text=text, metadata=meta, n_tokens=n,
                                embed_text=etext))
        return chunks

    def _pack(self, units: list[_Unit], documents: Sequence[Document],
              header_costs: list[int]) -> list[list[_Unit]]:
        budget = self.limit - self.overhead
        groups: list[list[_Unit]] = []
        current: list[_Unit] = []
        size = 0

        def page_of(u: _Unit) -> Any:
            return documents[u.doc].metadata.get("page")

        for unit in self._split_long_units(units, documents):
            header_cost = header_costs[current[0].doc if current else unit.doc]
            new_page = bool(current) and page_of(unit) != page_of(current[0])
            if current and (new_page or size + unit.tokens + header_cost > budget):
                groups.append(current)
                current, size = ([], 0) if new_page else self._overlap(current)
            current.append(unit)
            size += unit.tokens
        if current:
            groups.append(current)
        return groups

    def _overlap(self, group: list[_Unit]) -> tuple[list[_Unit], int]:
        carried: list[_Unit] = []
        size = 0
        for unit in reversed(group[1:]):
            if size + unit.tokens > self.config.overlap_tokens:
                break
            carried.insert(0, unit)
            size += unit.tokens
        return carried, size

    def _split_long_units(self, units: list[_Unit], documents: Sequence[Document]) -> list[_Unit]:
        budget = (self.limit - self.overhead) * 3 // 4
        out: list[_Unit] = []
        for unit in units:
            if unit.tokens <= budget:
                out.append(unit)
                continue
            text = documents[unit.doc].text
            stack = [(unit.start, unit.end, unit.tokens)]
            while stack:
                s, e, n = stack.pop()
                if n <= budget or e - s < 2:
                    out.append(_Unit(unit.doc, s, e, n))
                    continue
                cut = s + _split_point(text[s:e])
                left, right = (s, cut), (cut, e)
                nl, nr = (max(c - self.overhead, 1) for c in self.count([text[left[0]:left[1]],
                                                                        text[right[0]:right[1]]]))
                stack.append((right[0], right[1], nr))
                stack.append((left[0], left[1], nl))
        return out

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


def _split_point(text: str) -> int:
    """A cut near the middle of ``text``, at whitespace or between CJK characters when possible."""
    mid = len(text) // 2
    for offset in range(0, max(mid, 1)):
        for pos in (mid + offset, mid - offset):
            if 0 < pos < len(text) and (text[pos].isspace() or CJK_RE.match(text[pos - 1])):
                return pos
    return max(mid, 1)
