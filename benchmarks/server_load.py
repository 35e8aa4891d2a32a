"""Load test of the REST server: N concurrent clients for T seconds, a mix of /v1/search and /v1/ask.

    python benchmarks/server_load.py                       # 20 clients, 60 s, sample knowledge base
    python benchmarks/server_load.py --clients 5 --duration 10 --no-cache --json out.json

Bounded: no new request after ``--duration`` seconds or ``--max-requests`` requests, each request
times out after ``--timeout`` seconds; the server is a ``kb serve`` subprocess on 127.0.0.1 (a free
port), stopped at the end. Questions come from ``examples/sample_qa.jsonl`` (answerable and
unanswerable, English and Chinese). Prints p50/p95/max latency per endpoint, throughput and errors;
exit status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_KB = ROOT / "examples" / "sample_kb"
SAMPLE_QA = ROOT / "examples" / "sample_qa.jsonl"
DEFAULT_KB = ROOT / "benchmarks" / ".cache" / "server_load_kb"


def ensure_kb(path: Path) -> Path:
    if not (path / "docstore.sqlite3").exists():
        print(f"ingesting {SAMPLE_KB} into {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "kb_assistant.cli", "ingest", str(SAMPLE_KB), "--kb", str(path),
                        "-q"], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(kb: Path, port: int, queue: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kb_assistant", "serve", "--kb", str(kb), "--host", "127.0.0.1",
           "--port", str(port), "--queue", str(queue)]
    log = kb.parent / "server_load.log"
    with open(log, "w") as fh:  # the server's log goes to a file (a pipe nobody reads would block it)
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("server did not start within 120 s")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def client(cid: int, url: str, questions: list[str], args: argparse.Namespace, stop_at: float,
                 budget: list[int], results: list[dict]) -> None:
    rng = random.Random(args.seed * 1000 + cid)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout) as http:
        await asyncio.sleep(rng.random() * 0.5)  # spread the start
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            question = rng.choice(questions)
            if rng.random() < args.ask_ratio:
                endpoint = "/v1/ask"
                body: dict = {"question": question}
                if args.no_cache:
                    body["use_cache"] = False
            else:
                endpoint, body = "/v1/search", {"query": question, "k": 5}
            t0 = time.perf_counter()
            record = {"endpoint": endpoint, "client": cid}
            try:
                resp = await http.post(endpoint, json=body)
                record["status"] = resp.status_code
                if resp.status_code == 200 and endpoint == "/v1/ask":
                    data = resp.json()
                    record["mode"] = "cached" if data.get("cached") else data.get("mode")
                elif resp.status_code != 200:
                    record["error"] = resp.text[:200]
            except httpx.HTTPError as exc:
                record["status"] = 0
                record["error"] = f"{type(exc).__name__}: {exc}"
            record["ms"] = (time.perf_counter() - t0) * 1000.0
            results.append(record)


async def run_load(url: str, questions: list[str], args: argparse.Namespace) -> tuple[list[dict], float]:
    results: list[dict] = []
    budget = [args.max_requests]
    t0 = time.monotonic()
    stop_at = t0 + args.duration
    await asyncio.gather(*(client(i, url, questions, args, stop_at, budget, results)
                           for i in range(args.clients)))
    return results, time.monotonic() - t0


def summarise(results: list[dict], wall: float) -> dict:
    summary: dict = {"wall_s": round(wall, 1), "requests": len(results),
                     "errors": sum(1 for r in results if r["status"] != 200),
                     "throughput_rps": round(len(results) / wall, 2), "endpoints": {}}
    for endpoint in ("/v1/search", "/v1/ask"):
        ok = [r["ms"] for r in results if r["endpoint"] == endpoint and r["status"] == 200]
        rows = [r for r in results if r["endpoint"] == endpoint]
        modes: dict[str, int] = {}
        by_mode: dict[str, list[float]] = {}
        for r in rows:
            if "mode" in r:
                modes[r["mode"]] = modes.get(r["mode"], 0) + 1
                by_mode.setdefault(r["mode"], []).append(r["ms"])
        summary["endpoints"][endpoint] = {
            "requests": len(rows), "errors": len(rows) - len(ok), "rps": round(len(rows) / wall, 2),
            "p50_ms": round(percentile(ok, 0.50), 1), "p95_ms": round(percentile(ok, 0.95), 1),
            "max_ms": round(max(ok), 1) if ok else None,
            "mean_ms": round(statistics.fmean(ok), 1) if ok else None, "modes": modes,
            "by_mode": {m: {"n": len(v), "p50_ms": round(percentile(v, 0.5), 1),
                            "p95_ms": round(percentile(v, 0.95), 1)} for m, v in sorted(by_mode.items())}}
    errors = [r["error"] for r in results if r.get("error")]
    summary["error_samples"] = sorted(set(errors))[:5]
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kb", type=Path, default=DEFAULT_KB,
                   help="knowledge base (default: the sample KB, built once)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0, help="seconds during which requests are sent")
    p.add_argument("--max-requests", type=int, default=20_000, help="hard cap on requests")
    p.add_argument("--ask-ratio", type=float, default=0.5, help="fraction of requests that are /v1/ask")
    p.add_argument("--no-cache", action="store_true", help="ask with use_cache=false (every answer computed)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request timeout (s)")
    p.add_argument("--queue", type=int, default=64, help="server --queue (answers allowed to wait)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the summary here")
    args = p.parse_args()
    if not 1 <= args.clients <= 200 or not 0 < args.duration <= 600:
        p.error("--clients must be in 1..200 and --duration in (0, 600]")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    lines = SAMPLE_QA.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    questions = [r["question"] for r in records]
    per_lang = {r.get("lang", "en"): r["question"] for r in records}  # warm-up: jieba loads on first zh query
    kb = ensure_kb(args.kb)
    port = free_port()
    server = start_server(kb, port, args.queue)
    url = f"http://127.0.0.1:{port}"
    try:
        # warm-up (not measured): embedder and generator load on first use
        warm_ups = [("/v1/search", {"query": q}) for q in per_lang.values()]
        warm_ups.append(("/v1/ask", {"question": questions[0], "use_cache": False}))
        for endpoint, body in warm_ups:
            warm = httpx.post(f"{url}{endpoint}", json=body, timeout=300)
            if warm.status_code != 200:
                raise SystemExit(f"warm-up {endpoint} failed: {warm.status_code} {warm.text[:300]}")
        print(f"load: {args.clients} clients, {args.duration:.0f} s, ask ratio {args.ask_ratio}, "
              f"cache {'off' if args.no_cache else 'on'}, {len(questions)} questions", flush=True)
        results, wall = asyncio.run(run_load(url, questions, args))
        health = httpx.get(f"{url}/healthz", timeout=10).json()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    summary = summarise(results, wall)
    summary.update(clients=args.clients, duration_s=args.duration, ask_ratio=args.ask_ratio,
                   cache=not args.no_cache, queue=health.get("queue"), cpus=os.cpu_count())
    print(f"{'endpoint':<12} {'n':>6} {'err':>4} {'req/s':>7} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}"
          "  modes")
    for endpoint, s in summary["endpoints"].items():
        print(f"{endpoint:<12} {s['requests']:>6} {s['errors']:>4} {s['rps']:>7.2f} {s['p50_ms']:>9.1f} "
              f"{s['p95_ms']:>9.1f} {s['max_ms'] or 0:>9.1f}  {s['modes']}")
        for mode, m in s["by_mode"].items():
            print(f"  {mode:<10} {m['n']:>6} {'':>4} {'':>7} {m['p50_ms']:>9.1f} {m['p95_ms']:>9.1f}")
    print(f"total: {summary['requests']} requests in {summary['wall_s']} s = "
          f"{summary['throughput_rps']} req/s, "
          f"{summary['errors']} errors; server queue {summary['queue']}")
    for err in summary["error_samples"]:
        print(f"  error: {err}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
