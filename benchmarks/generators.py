#!/usr/bin/env python
"""Generator benchmark: load time, prefill, decode speed and answer quality per model / backend / dtype.

    python benchmarks/generators.py speed VARIANT [VARIANT ...] [--threads 2] [--json OUT]
    python benchmarks/generators.py answers VARIANT [VARIANT ...] [--kb DIR] [--qa FILE] [--limit 40]
                                        [--json OUT]
    python benchmarks/generators.py table benchmarks/results/generators*.json

VARIANT = MODEL:BACKEND[:DTYPE], MODEL a `kb models list` name, BACKEND torch | llama_cpp, DTYPE
float32 | bfloat16 | int8 (torch only), e.g. ``qwen2.5-0.5b:torch:bfloat16``, ``qwen2.5-1.5b:llama_cpp``.

speed: each variant in its own process (cold process cache): load = constructor + ``warm_up``; prefill =
``generate(max_new_tokens=1)`` on a ~300-token RAG prompt built by ``prompts.build_messages`` (median of
3 questions, passages rotated: only the system-prompt prefix is re-used, as when serving); decode =
(time of a 64-token answer minus prefill) / (new tokens - 1).
answers: the real ``KnowledgeBase.ask_stream`` over a stratified subset of the QA file, as
``benchmarks/answers.py`` runs it, with ``[generation] model`` and ``backend`` (and dtype/int8 or
n_threads) of the variant as config overrides, and ``answer_mode="generate"`` for a model that writes
Chinese (SmolLM2: the shipped ``auto`` + en).
Run timed commands alone: ``flock /tmp/kb-bench.lock python benchmarks/generators.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PASSAGES = [
    "APT reads its list of package sources from /etc/apt/sources.list and from the files in "
    "/etc/apt/sources.list.d/. Each line names the type of archive (deb for binary packages, deb-src for "
    "source packages), the URL of the mirror, the distribution (such as bookworm or stable) and the "
    "components to use (main, contrib, non-free and non-free-firmware). After editing these files, run "
    "apt update so that APT downloads the new Packages indexes before installing anything.",
    "The apt-get and apt commands install a package together with all of its dependencies. "
    "apt install foo downloads the .deb files into /var/cache/apt/archives/ and unpacks them with dpkg; "
    "apt remove foo removes the package but keeps its configuration files, while apt purge foo also "
    "deletes them. apt full-upgrade may remove installed packages when that is needed to upgrade the "
    "whole system, which apt upgrade never does.",
    "Unattended upgrades are handled by the unattended-upgrades package. Its configuration file "
    "/etc/apt/apt.conf.d/50unattended-upgrades lists the origins from which security updates are "
    "installed automatically, and /etc/apt/apt.conf.d/20auto-upgrades enables the daily run. Logs of "
    "each run are kept in /var/log/unattended-upgrades/.",
]
QUESTIONS = ["Where does APT read its list of package sources from?",
             "What is the difference between apt remove and apt purge?",
             "Which file enables the daily run of unattended upgrades?"]
LONG_QUESTION = "Explain in detail, step by step, everything the passages say about APT and its files."


def parse_variant(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[1] not in ("torch", "llama_cpp"):
        raise SystemExit(f"bad variant {text!r}: MODEL:BACKEND[:DTYPE]")
    model, backend = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else ("float32" if backend == "torch" else "Q")
    return {"variant": text, "model": model, "backend": backend, "dtype": dtype}


def generator_kwargs(v: dict[str, Any], threads: int) -> dict[str, Any]:
    """``make_generator`` kwargs of a variant (the model folder or GGUF is resolved once here)."""
    from kb_assistant.models.factory import resolve_model_path

    path = resolve_model_path(v["model"], None, v["backend"])
    if v["backend"] == "llama_cpp":
        return {"backend": "llama_cpp", "model_path": str(path), "n_threads": threads}
    from kb_assistant.models.files import default_generator_path

    return {"model_path": str(path or default_generator_path()), "device": "cpu",
            "dtype": "float32" if v["dtype"] == "int8" else v["dtype"], "int8": v["dtype"] == "int8"}


def _env(threads: int) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"threads": threads, "load_avg": os.getloadavg(), "cpus": os.cpu_count(), "commit": commit,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _cpu() -> float:
    """CPU seconds of this process, all threads (less sensitive to other jobs than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def speed_one(v: dict[str, Any], threads: int) -> dict[str, Any]:
    from kb_assistant.generation import GenerationConfig
    from kb_assistant.models.factory import make_generator
    from kb_assistant.prompts import build_messages

    _set_threads(threads)
    kwargs = generator_kwargs(v, threads)
    load_avg = os.getloadavg()[0]
    t0 = time.perf_counter()
    gen = make_generator(**kwargs).warm_up()
    load_s = time.perf_counter() - t0

    def messages(question: str, turn: int = 0) -> list[dict[str, str]]:
        # passages rotated per question: as when serving, only the system prompt prefix can be re-used
        passages = PASSAGES[turn % 3:] + PASSAGES[:turn % 3]
        return build_messages(question, passages, lang="en", max_context_tokens=256,
                              count_tokens=gen.count_tokens)[0]

    gen.generate(messages("warm-up question?", 2), GenerationConfig(max_new_tokens=2))
    prefill, prefill_cpu = [], []
    for turn, q in enumerate(QUESTIONS):
        t, c = time.perf_counter(), _cpu()
        gen.generate(messages(q, turn), GenerationConfig(max_new_tokens=1))
        prefill.append(time.perf_counter() - t)
        prefill_cpu.append(_cpu() - c)
    prefill_s, prefill_cpu_s = statistics.median(prefill), statistics.median(prefill_cpu)
    t, c = time.perf_counter(), _cpu()
    text = gen.generate(messages(LONG_QUESTION, 1), GenerationConfig(max_new_tokens=64))
    total, total_cpu = time.perf_counter() - t, _cpu() - c
    n_new = max(gen.count_tokens(text), 2)
    prompt_tokens = gen.count_tokens(gen.render(messages(QUESTIONS[0])))
    return {**v, "load_avg_start": round(load_avg, 2), "load_avg_end": round(os.getloadavg()[0], 2),
            "load_s": round(load_s, 2), "prompt_tokens": prompt_tokens,
            "prefill_s": round(prefill_s, 3), "prefill_cpu_s": round(prefill_cpu_s, 3), "new_tokens": n_new,
            "decode_ms_per_token": round(1000 * (total - prefill_s) / (n_new - 1), 1),
            "decode_cpu_ms_per_token": round(1000 * (total_cpu - prefill_cpu_s) / (n_new - 1), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "sample": text[:200]}


def cmd_speed(args: argparse.Namespace) -> dict[str, Any]:
    if len(args.variants) == 1:
        row = speed_one(parse_variant(args.variants[0]), args.threads)
        print(json.dumps(row, ensure_ascii=False))
        return {"env": _env(args.threads), "speed": [row]}
    rows = []
    for variant in args.variants:  # one process each: a cold process cache, a fresh peak RSS
        out = subprocess.run([sys.executable, __file__, "speed", variant, "--threads", str(args.threads)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            rows.append({**parse_variant(variant), "error": out.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    return {"env": _env(args.threads), "speed": rows}


class _CpuClock:
    """Wraps an answer stream: CPU seconds of this process until its first non-empty piece."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.start, self.first_cpu = stream, _cpu(), None

    def __iter__(self) -> Any:
        for piece in self.stream:
            if self.first_cpu is None and piece:
                self.first_cpu = _cpu() - self.start
            yield piece

    @property
    def answer(self) -> Any:
        return self.stream.answer


def _variant_kb(kb_dir: Path, v: dict[str, Any], threads: int) -> tuple[Any, dict[str, Any]]:
    """A KnowledgeBase answering with variant ``v`` (config overrides only; nothing is saved)."""
    from kb_assistant import KnowledgeBase
    from kb_assistant.models import get_model

    langs = list(get_model(v["model"]).languages)
    query = {"answer_mode": "generate" if "zh" in langs else "auto", "generate_langs": langs}
    generation: dict[str, Any] = {"model": v["model"], "backend": v["backend"]}
    if v["backend"] == "llama_cpp":
        generation["n_threads"] = threads
    else:
        generation.update(device="cpu", dtype="float32" if v["dtype"] == "int8" else v["dtype"],
                          int8=v["dtype"] == "int8")
    kb = KnowledgeBase(kb_dir, {"query": query, "generation": generation})
    return kb, {"query": query, "generation": generation}


def cmd_answers(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant answers each question in turn (interleaved: machine noise hits them alike)."""
    from answers import stratified

    from kb_assistant.evaluation.answers_eval import AnswerReport, evaluate_answers
    from kb_assistant.evaluation.qa import load_qa

    _set_threads(args.threads)
    variants = [parse_variant(text) for text in args.variants]
    kbs, out = [], {}
    for v in variants:
        kb, setup = _variant_kb(args.kb, v, args.threads)
        t0 = time.perf_counter()
        kb.ask("warm-up: what is apt?", use_cache=False)
        kbs.append(kb)
        out[v["variant"]] = {**setup, "variant": v, "first_answer_s": round(time.perf_counter() - t0, 2)}
    items = stratified(load_qa(args.qa), args.limit)
    env = _env(args.threads)
    reports = {v["variant"]: AnswerReport() for v in variants}
    cpu_ms: dict[str, list[tuple[float, float]]] = {v["variant"]: [] for v in variants}
    for i, item in enumerate(items, 1):
        for v, kb in zip(variants, kbs, strict=True):
            clocks: list[_CpuClock] = []

            def ask(q: str, kb: Any = kb, clocks: list[_CpuClock] = clocks) -> _CpuClock:
                clocks.append(_CpuClock(kb.ask_stream(q, use_cache=False)))
                return clocks[-1]

            c = _cpu()
            reports[v["variant"]].records += evaluate_answers(ask, [item]).records
            total = _cpu() - c
            cpu_ms[v["variant"]].append((round(1000 * total), round(1000 * (clocks[0].first_cpu or total))))
        print(f"  {i}/{len(items)} (load {os.getloadavg()[0]:.1f})", flush=True)
    for name, report in reports.items():
        modes: dict[str, int] = {}
        for r in report.records:
            modes[r.mode] = modes.get(r.mode, 0) + 1
        answered = sum(modes.get(m, 0) for m in ("generated", "extractive"))
        data = report.to_dict()
        for rec, (ms, first) in zip(data["records"], cpu_ms[name], strict=True):
            rec["cpu_ms"], rec["first_token_cpu_ms"] = ms, first
        out[name].update(modes=modes, generated_share=round(modes.get("generated", 0) / max(answered, 1), 3),
                         cpu_ms_p50=statistics.median(ms for ms, _ in cpu_ms[name]),
                         cpu_ms_p95=_p95([ms for ms, _ in cpu_ms[name]]),
                         first_token_cpu_ms_p50=statistics.median(f for _, f in cpu_ms[name]), **data)
        print(f"\n{name}: {len(items)} questions of {args.qa.name}, modes {modes}")
        print(report.format_table())
    return {"env": {**env, "load_avg_end": os.getloadavg()}, "qa": str(args.qa.name), "kb": str(args.kb),
            "variants": out}


def _p95(values: list[float]) -> float:
    from kb_assistant.evaluation.metrics import percentile

    return percentile(values, 95)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _sec(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def cmd_table(args: argparse.Namespace) -> None:
    speed: dict[str, dict[str, Any]] = {}
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    for path in args.files:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for row in data.get("speed", []):
            speed[row["variant"]] = {**row, "file": Path(path).name, "load_avg": data["env"]["load_avg"][0]}
        for name, d in data.get("variants", {}).items():
            answers[(name, data["qa"])] = {**d, "env": data["env"], "file": Path(path).name}
    print("| variant | load | prompt tok | prefill | decode ms/tok | CPU s prefill / ms/tok | peak RSS "
          "| load avg | file |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in speed.items():
        if "error" in r:
            print(f"| {name} | error: {r['error']} |")
            continue
        cpu = (f"{r['prefill_cpu_s']:.2f} / {r['decode_cpu_ms_per_token']:.0f}" if "prefill_cpu_s" in r
               else "-")
        load = r.get("load_avg_start", r["load_avg"])
        print(f"| {name} | {r['load_s']:.1f} s | {r['prompt_tokens']} | {r['prefill_s']:.2f} s | "
              f"{r['decode_ms_per_token']:.0f} | {cpu} | {r['peak_rss_mb']} MB | {load:.1f} | {r['file']} |")
    print("\n| variant | QA | n | facts | gen / extr / unk | unk@unans | false unk | p50 | p95 "
          "| 1st tok p50 | CPU p50 / p95 / 1st tok | load avg | file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, qa), d in answers.items():
        s, m = d["summary"]["overall"], d["modes"]
        print(f"| {name} | {qa} | {s['n']} | {_pct(s['facts_rate'])} | {m.get('generated', 0)} / "
              f"{m.get('extractive', 0)} / {m.get('unknown', 0)} | {_pct(s['unknown_rate_unanswerable'])} | "
              f"{_pct(s['false_unknown_rate'])} | {_sec(s['latency_p50_ms'])} | "
              f"{_sec(s['latency_p95_ms'])} | {_sec(s['first_token_p50_ms'])} | "
              f"{_sec(d['cpu_ms_p50'])} / {_sec(d['cpu_ms_p95'])} / {_sec(d['first_token_cpu_ms_p50'])} | "
              f"{d['env']['load_avg'][0]:.1f} | {d['file']} |")
        for kind in ("en", "zh", "cross"):
            k = d["summary"].get(kind)
            if k:
                print(f"| ↳ {kind} | | {k['n']} | {_pct(k['facts_rate'])} | | | "
                      f"{_pct(k['false_unknown_rate'])} | {_sec(k['latency_p50_ms'])} | "
                      f"{_sec(k['latency_p95_ms'])} | {_sec(k['first_token_p50_ms'])} | | | |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("speed")
    p.add_argument("variants", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("answers")
    p.add_argument("variants", nargs="+")
    p.add_argument("--kb", type=Path, default=ROOT / "benchmarks" / ".cache" / "kb-minilm")
    p.add_argument("--qa", type=Path, default=ROOT / "benchmarks" / "data" / "debian_qa.jsonl")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("table")
    p.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    if args.cmd == "table":
        cmd_table(args)
        return 0
    result = cmd_speed(args) if args.cmd == "speed" else cmd_answers(args)
    result["command"] = "python benchmarks/generators.py " + " ".join(sys.argv[1:])
    if args.json:
        from kb_assistant.storage_utils import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
