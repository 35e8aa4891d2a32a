"""Streaming answers: text pieces as the generator writes them, checked against the evidence first.

The first sentence (or first ``stream_check_terms`` content words beyond the question's own) is held
back and checked before anything is shown: if it drifts, generation stops and the extractive answer is
streamed instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from ..errors import GeneratorUnavailable
from ..text import truncate_sentences
from .answer import Answer, Prepared, Steps, ms

logger = logging.getLogger(__name__)


def _unless_unavailable(stream: Iterator[str]) -> Iterator[str]:
    """``stream``'s pieces; a generator that became unavailable ends it (-> the extractive answer)."""
    try:
        yield from stream
    except GeneratorUnavailable as exc:
        logger.warning("%s: answering extractively", exc)


class StreamingAnswer:
    """Iterate to receive answer pieces as they are generated; ``answer`` holds the final Answer.

    The first sentence (or first ``stream_check_terms`` new content words) is held back and checked against
    the evidence before anything is shown: if it drifts, generation stops and the extractive answer is
    streamed instead. Later text is streamed as it comes; if the whole answer then fails the grounding
    check, ``answer.supported`` is False and the extractive answer (what :meth:`QueryEngine.ask` would
    have answered) is appended ("\nSource: ... [1]").
    """

    def __init__(self, engine: Steps, prep: Prepared) -> None:
        self._engine, self._prep = engine, prep
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        prep, engine = self._prep, self._engine
        if prep.answer is not None:
            self.answer = engine._finish(prep, prep.answer)
            yield self.answer.text
            return
        cfg = prep.gen_config
        assert cfg is not None
        t = time.perf_counter()
        acc, emitted, checked = "", "", False
        stream = engine.generator.stream(prep.messages, cfg)
        try:
            for piece in _unless_unavailable(stream):
                acc += piece
                allowed = truncate_sentences(acc, cfg.max_sentences)
                if not checked:
                    ok = engine._first_words_ok(prep, acc)
                    if ok is None:
                        continue  # first sentence not complete yet
                    checked = True
                    if not ok:
                        break
                if len(allowed) > len(emitted):
                    if "first_token" not in prep.timings:
                        prep.timings["first_token"] = ms(prep.t0)
                    yield allowed[len(emitted):] if emitted else allowed
                    emitted = allowed
        finally:
            stream.close()
        prep.timings["generate"] = ms(t)
        text = truncate_sentences(acc, cfg.max_sentences)
        if not checked and text:
            checked = engine.grounding(prep, text, prep.query).ok
            if checked:
                prep.timings["first_token"] = ms(prep.t0)
                yield text
                emitted = text
        if not emitted:
            answer = engine._quote(prep)
            prep.timings.setdefault("first_token", ms(prep.t0))
            yield answer.text
        else:
            full, citations = engine._cite(prep, emitted, strip_invalid=False)
            if len(full) > len(emitted):
                yield full[len(emitted):]
            g = engine.grounding(prep, emitted, prep.query)
            grounded, support = g.ok, g.support
            if not grounded:  # streamed text cannot be taken back: the extractive answer follows it
                # over the prompt's evidence (not _quote's): its [n] must mean what the draft's [n] mean
                quote = engine._extractive(prep)
                piece = ("\n来源：" if prep.lang == "zh" else "\nSource: ") + quote.text
                yield piece
                full += piece
                citations = {**citations, **quote.citations}
            answer = Answer(full, unknown=False, sources=prep.sources, citations=citations, mode="generated",
                            lang=prep.lang, supported=grounded,
                            question=prep.question, query=prep.query, support=support)
        self.answer = engine._finish(prep, answer)
