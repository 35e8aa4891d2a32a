"""Load test of the REST server: N concurrent clients for T seconds, a mix of /v1/search and /v1/ask.

    python benchmarks/server_load.py                       # 20 clients, 60 s, sample knowledge base
    python benchmarks/server_load.py --clients 5 --duration 10 --no-cache --json out.json
    python benchmarks/server_load.py --hostile --json benchmarks/results/server_hostile.json

Bounded: no new request after ``--duration`` seconds or ``--max-requests`` requests, each request
times out after ``--timeout`` seconds; the server is a ``kb serve`` subprocess on 127.0.0.1 (a free
port), stopped at the end. Questions come from ``examples/sample_qa.jsonl`` (answerable and
unanswerable, English and Chinese). Prints p50/p95/max latency per endpoint, throughput and errors;
exit status 1 if any request failed.

``--compare``: the same load twice in one run, first one answer at a time (``--batch-max 1``), then
with dynamic batching (``--batch-max N``, default the ``[server]`` default); prints and writes both and
the ratio of answered requests per minute.

``--hostile``: the server runs with API keys (one per normal client, plus ``hr``, ``it``, a public key
and a burst key) on a copy of the knowledge base, and a quarter of the clients (at least 2) send hostile
requests instead (:data:`HOSTILE`: oversize chat messages and bodies, oversize fields, a question over
the token budget, an oversize history, cross-group deletes, uploads and group widening, bad keys,
rate-limit bursts, a zip-bomb DOCX and a 25 MB upload). It passes when the normal requests have 0
errors, every hostile request gets a 4xx, HR's upload is unchanged at the end, the saved indexes verify,
and the generator's slot was never held longer than the request timeout. Normal clients then start a
request at most every ``--pace-ms`` (120 ms): each has its own key, and the per-key rate limit (600 a
minute) is what refuses a client that sends more.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
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


def start_server(kb: Path, port: int, queue: int, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kb_assistant", "serve", "--kb", str(kb), "--host", "127.0.0.1",
           "--port", str(port), "--queue", str(queue), *(extra or [])]
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
                 budget: list[int], results: list[dict], headers: dict | None = None) -> None:
    rng = random.Random(args.seed * 1000 + cid)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, headers=headers) as http:
        await asyncio.sleep(rng.random() * 0.5)  # spread the start
        pace = (args.pace_ms if args.pace_ms is not None else 120.0 if args.hostile else 0.0) / 1000.0
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            started = time.monotonic()
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
            if pace:
                await asyncio.sleep(max(0.0, started + pace - time.monotonic()))


# -- the hostile mix ----------------------------------------------------------------------------------
HR, IT, PUBLIC, BURST = "hr-key-bench-0001", "it-key-bench-0001", "pub-key-bench-0001", "burst-key-bench-1"
BOTH = "hr-it-key-bench-01"  # reads HR's document (shares "hr") but did not upload it
HR_PLAN = b"HR plan: the payroll team is reorganised in May; budget 1.2 million euros.\n"


def hostile_keys(normal: int) -> dict[str, list[str]]:
    keys = {HR: ["hr"], IT: ["it"], PUBLIC: [], BURST: [], BOTH: ["hr", "it"]}
    keys.update({f"normal-key-{i:04d}": [] for i in range(normal)})
    return keys


def _chat(text: str, **extra: object) -> tuple[str, str, dict]:
    body = {"messages": [{"role": "user", "content": text}], **extra}
    return "POST", "/v1/chat/completions", {"json": body}


def _upload(name: str, data: bytes) -> dict:
    return {"files": {"files": (name, data)}}


def zip_bomb_docx(unzipped_mb: int = 120) -> bytes:
    """A DOCX whose document.xml expands to ``unzipped_mb`` MB (about 120 KB zipped)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats'
                    '.org/package/2006/content-types"/>')
        with zf.open("word/document.xml", "w", force_zip64=True) as part:
            block = b" " * 2**20
            for _ in range(unzipped_mb):
                part.write(block)
    return buf.getvalue()


#: kind -> (key, method, path, request keyword arguments); the HR document's id replaces {hr_doc}
HOSTILE: dict[str, tuple[str, str, str, dict]] = {
    "oversize_chat_60kb": (PUBLIC, *_chat("vpn " * 15_000)),
    "oversize_body_1mb": (PUBLIC, *_chat("x" * 1_000_000)),
    "oversize_query": (PUBLIC, "POST", "/v1/search", {"json": {"query": "q" * 5000}}),
    "oversize_groups": (PUBLIC, "POST", "/v1/search", {"json": {"query": "vpn", "groups": ["g" * 300]}}),
    "oversize_filters": (PUBLIC, "POST", "/v1/search", {"json": {"query": "vpn",
                                                                 "filters": {"source": ["s" * 300] * 50}}}),
    "oversize_model": (PUBLIC, *_chat("vpn?", model="m" * 300)),
    "over_token_budget": (PUBLIC, "POST", "/v1/ask",
                          {"json": {"question": " ".join(f"w{i}x{i * 7}" for i in range(400))}}),
    "oversize_history": (PUBLIC, "POST", "/v1/ask", {"json": {
        "question": "and then?", "history": [{"role": "user", "content": "h" * 19_000}] * 6}}),
    "cross_group_delete": (IT, "DELETE", "/v1/documents/{hr_doc}", {}),
    "cross_group_binary_upload": (IT, "POST", "/v1/documents", _upload("plan.txt", bytes(range(256)) * 64)),
    "public_deletes_hr_doc": (PUBLIC, "DELETE", "/v1/documents/{hr_doc}", {}),
    "reader_deletes_hr_doc": (BOTH, "DELETE", "/v1/documents/{hr_doc}", {}),
    "widen_groups": (IT, "POST", "/v1/search", {"json": {"query": "payroll", "groups": ["hr"]}}),
    "bad_key": ("not-a-key-000000", "POST", "/v1/search", {"json": {"query": "vpn"}}),
    "zip_bomb_docx": (PUBLIC, "POST", "/v1/documents", _upload("bomb.docx", zip_bomb_docx())),
    "huge_upload_25mb": (PUBLIC, "POST", "/v1/documents",
                         _upload("huge.txt", b"vpn huge upload\n" * 1_640_000)),
}


async def hostile_client(cid: int, url: str, stop_at: float, results: list[dict], hr_doc: str) -> None:
    kinds = sorted(HOSTILE)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.sleep(cid * 0.3)
        n = cid
        while time.monotonic() < stop_at:
            kind = kinds[n % len(kinds)]
            n += 1
            if kind == kinds[0] and n // len(kinds) % 3 == 1:  # every third round: a rate-limit burst
                await burst(http, results)
            key, method, path, kw = HOSTILE[kind]
            t0 = time.perf_counter()
            try:
                resp = await http.request(method, path.format(hr_doc=hr_doc), headers={"X-API-Key": key},
                                          **kw)
                status, reason = resp.status_code, resp.json().get("error", {}).get("message", "")[:160]
            except httpx.HTTPError as exc:
                status, reason = 0, f"{type(exc).__name__}: {exc}"
            results.append({"kind": kind, "status": status, "reason": reason,
                            "ms": (time.perf_counter() - t0) * 1000.0})
            await asyncio.sleep(0.2)


async def burst(http: httpx.AsyncClient, results: list[dict], n: int = 100) -> None:
    """``n`` requests at once from one key: those beyond its bucket must get 429."""
    async def one() -> None:
        t0 = time.perf_counter()
        resp = await http.get("/v1/models", headers={"X-API-Key": BURST})
        results.append({"kind": "rate_limit_burst", "status": resp.status_code, "burst": True,
                        "ms": (time.perf_counter() - t0) * 1000.0})

    await asyncio.gather(*(one() for _ in range(n)))


def summarise_hostile(results: list[dict]) -> dict:
    out: dict = {}
    for kind in sorted({r["kind"] for r in results}):
        rows = [r for r in results if r["kind"] == kind]
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        refused = [r for r in rows if 400 <= r["status"] < 500]
        # a burst may use what is in the key's bucket: those few are allowed, the rest must be 429
        allowed = sum(1 for r in rows if r.get("burst") and r["status"] == 200)
        out[kind] = {"n": len(rows), "statuses": statuses, "refused_4xx": len(refused),
                     "ok": len(refused) + allowed == len(rows) and len(refused) > 0,
                     "p50_ms": round(percentile([r["ms"] for r in refused], 0.5), 1),
                     "p95_ms": round(percentile([r["ms"] for r in refused], 0.95), 1),
                     "reason": next((r["reason"] for r in refused if r.get("reason")), "")}
    return out


def hostile_setup(url: str) -> str:
    """HR uploads plan.txt (the document hostile requests target); the public key uploads its own."""
    r = httpx.post(f"{url}/v1/documents", headers={"X-API-Key": HR}, files={"files": ("plan.txt", HR_PLAN)},
                   timeout=300)
    if r.status_code != 201:
        raise SystemExit(f"HR upload failed: {r.status_code} {r.text[:300]}")
    docs = httpx.get(f"{url}/v1/documents", headers={"X-API-Key": HR}).json()["documents"]
    return next(d["doc_id"] for d in docs if d["path"] == "uploads/hr/plan.txt")


def hostile_invariants(url: str, kb: Path) -> dict:
    same_name = httpx.post(f"{url}/v1/documents", headers={"X-API-Key": PUBLIC}, timeout=300,
                           files={"files": ("plan.txt", b"Public plan: a picnic in June.\n")})
    docs = httpx.get(f"{url}/v1/documents", headers={"X-API-Key": HR}).json()["documents"]
    hr_doc = next((d for d in docs if d["path"] == "uploads/hr/plan.txt"), None)
    return {"public_same_name_upload_status": same_name.status_code,
            "hr_file_unchanged": (kb / "uploads" / "hr" / "plan.txt").read_bytes() == HR_PLAN,
            "hr_doc_groups": hr_doc["groups"] if hr_doc else None}


async def run_load(url: str, questions: list[str], args: argparse.Namespace, hr_doc: str | None = None,
                   ) -> tuple[list[dict], list[dict], float]:
    results: list[dict] = []
    hostile: list[dict] = []
    budget = [args.max_requests]
    t0 = time.monotonic()
    stop_at = t0 + args.duration
    n_hostile = max(2, args.clients // 4) if hr_doc else 0
    normal = [client(i, url, questions, args, stop_at, budget, results,
                     {"X-API-Key": f"normal-key-{i:04d}"} if hr_doc else None)
              for i in range(args.clients - n_hostile)]
    bad = [hostile_client(i, url, stop_at, hostile, hr_doc) for i in range(n_hostile) if hr_doc]
    await asyncio.gather(*normal, *bad)
    return results, hostile, time.monotonic() - t0


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
    answered = [r for r in results if r["status"] == 200]
    summary["answered_per_min"] = round(len(answered) / wall * 60.0, 1)
    summary["ask_answered_per_min"] = round(sum(1 for r in answered if r["endpoint"] == "/v1/ask")
                                            / wall * 60.0, 1)
    errors = [r["error"] for r in results if r.get("error")]
    summary["error_samples"] = sorted(set(errors))[:5]
    return summary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kb", type=Path, default=DEFAULT_KB,
                   help="knowledge base (default: the sample KB, built once)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0, help="seconds during which requests are sent")
    p.add_argument("--max-requests", type=int, default=20_000, help="hard cap on requests")
    p.add_argument("--ask-ratio", type=float, default=0.5, help="fraction of requests that are /v1/ask")
    p.add_argument("--no-cache", action="store_true", help="ask with use_cache=false (every answer computed)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request timeout of the clients (s)")
    p.add_argument("--queue", type=int, default=64, help="server --queue (answers allowed to wait)")
    p.add_argument("--request-timeout", type=float, default=120.0, help="server --request-timeout (s)")
    p.add_argument("--batch-max", type=int, default=None,
                   help="server --batch-max (default: the [server] default; 1: one answer at a time)")
    p.add_argument("--compare", action="store_true",
                   help="run the load with --batch-max 1, then with --batch-max (batching), same seed")
    p.add_argument("--hostile", action="store_true", help="API keys, and a quarter of the clients hostile")
    p.add_argument("--pace-ms", type=float, default=None,
                   help="least time between the starts of one normal client's requests (default: 0; 120 with "
                        "--hostile, under the per-key rate limit of 600 a minute: a normal user is not a "
                        "client that sends 30 requests a second, and the rate limiter must refuse that one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the summary here")
    args = p.parse_args()
    if not 1 <= args.clients <= 200 or not 0 < args.duration <= 600:
        p.error("--clients must be in 1..200 and --duration in (0, 600]")
    return args


def measure(args: argparse.Namespace, kb: Path, questions: list[str], warm_questions: list[str],
            batch_max: int | None) -> tuple[dict, bool]:
    """One server, one load; the summary and whether a check failed."""
    extra = ["--request-timeout", str(args.request_timeout)]
    if batch_max is not None:
        extra += ["--batch-max", str(batch_max)]
    work = Path(tempfile.mkdtemp(prefix="kb-hostile-")) if args.hostile else None
    if work is not None:  # a copy: the hostile run uploads, and must not change the cached knowledge base
        kb = Path(shutil.copytree(kb, work / "kb"))
        (work / "keys.json").write_text(json.dumps(hostile_keys(args.clients)), encoding="utf-8")
        extra += ["--api-keys", str(work / "keys.json")]
    else:  # one client address for all: the normal load measures throughput, not the rate limiter
        extra += ["--rate-limit", "0"]
    port = free_port()
    server = start_server(kb, port, args.queue, extra)
    url = f"http://127.0.0.1:{port}"
    auth = {"X-API-Key": PUBLIC} if args.hostile else {}
    hostile: list[dict] = []
    invariants: dict = {}
    try:
        # warm-up (not measured): embedder and generator load on first use
        warm_ups = [("/v1/search", {"query": q}) for q in warm_questions]
        warm_ups.append(("/v1/ask", {"question": questions[0], "use_cache": False}))
        for endpoint, body in warm_ups:
            warm = httpx.post(f"{url}{endpoint}", json=body, timeout=300, headers=auth)
            if warm.status_code != 200:
                raise SystemExit(f"warm-up {endpoint} failed: {warm.status_code} {warm.text[:300]}")
        hr_doc = hostile_setup(url) if args.hostile else None
        print(f"load: {args.clients} clients, {args.duration:.0f} s, ask ratio {args.ask_ratio}, "
              f"cache {'off' if args.no_cache else 'on'}, {len(questions)} questions, batch_max "
              f"{batch_max or 'default'}{', hostile mix' if args.hostile else ''}", flush=True)
        load0 = os.getloadavg()
        results, hostile, wall = asyncio.run(run_load(url, questions, args, hr_doc))
        health = httpx.get(f"{url}/healthz", timeout=10).json()
        if args.hostile:
            invariants = hostile_invariants(url, kb)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    summary = summarise(results, wall)
    summary.update(clients=args.clients, duration_s=args.duration, ask_ratio=args.ask_ratio,
                   cache=not args.no_cache, queue=health.get("queue"), batching=health.get("batching"),
                   cpus=os.cpu_count(), request_timeout_s=health.get("request_timeout_s"),
                   load_average={"start": [round(x, 2) for x in load0],
                                 "end": [round(x, 2) for x in os.getloadavg()]})
    print(f"{'endpoint':<12} {'n':>6} {'err':>4} {'req/s':>7} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}"
          "  modes")
    for endpoint, e in summary["endpoints"].items():
        print(f"{endpoint:<12} {e['requests']:>6} {e['errors']:>4} {e['rps']:>7.2f} {e['p50_ms']:>9.1f} "
              f"{e['p95_ms']:>9.1f} {e['max_ms'] or 0:>9.1f}  {e['modes']}")
        for mode, m in e["by_mode"].items():
            print(f"  {mode:<10} {m['n']:>6} {'':>4} {'':>7} {m['p50_ms']:>9.1f} {m['p95_ms']:>9.1f}")
    print(f"total: {summary['requests']} requests in {summary['wall_s']} s = "
          f"{summary['throughput_rps']} req/s, {summary['answered_per_min']} answered/min, "
          f"{summary['errors']} errors; server queue {summary['queue']}; batching {summary['batching']}; "
          f"load average {summary['load_average']}", flush=True)
    for err in summary["error_samples"]:
        print(f"  error: {err}")
    failed = bool(summary["errors"])
    if args.hostile:
        failed |= report_hostile(summary, hostile, invariants, kb)
        shutil.rmtree(work, ignore_errors=True)
    return summary, failed


def compare(runs: dict[str, dict]) -> dict:
    """Batching against one at a time: ratios and the targets (>= 3x answered/min, p95 <= 20 s)."""
    one, batched = runs["one_at_a_time"], runs["batching"]
    ask1, ask2 = one["endpoints"]["/v1/ask"], batched["endpoints"]["/v1/ask"]
    out = {"answered_per_min": [one["answered_per_min"], batched["answered_per_min"]],
           "ask_answered_per_min": [one["ask_answered_per_min"], batched["ask_answered_per_min"]],
           "throughput_ratio": round(batched["answered_per_min"] / max(one["answered_per_min"], 1e-9), 2),
           "ask_throughput_ratio": round(batched["ask_answered_per_min"]
                                         / max(one["ask_answered_per_min"], 1e-9), 2),
           "ask_p50_ms": [ask1["p50_ms"], ask2["p50_ms"]], "ask_p95_ms": [ask1["p95_ms"], ask2["p95_ms"]],
           "errors": [one["errors"], batched["errors"]]}
    out["targets"] = {"throughput_3x": out["throughput_ratio"] >= 3.0,
                      "ask_p95_le_20s": ask2["p95_ms"] <= 20_000, "errors_0": batched["errors"] == 0}
    print(f"{'':<16} {'answered/min':>12} {'asks/min':>9} {'ask p50':>9} {'ask p95':>9} {'errors':>6}")
    for name, r in runs.items():
        a = r["endpoints"]["/v1/ask"]
        print(f"{name:<16} {r['answered_per_min']:>12.1f} {r['ask_answered_per_min']:>9.1f} "
              f"{a['p50_ms'] / 1000:>8.1f}s {a['p95_ms'] / 1000:>8.1f}s {r['errors']:>6}")
    print(f"batching: {out['throughput_ratio']}x answered/min ({out['ask_throughput_ratio']}x asks); "
          f"targets {out['targets']}")
    return out


def main() -> int:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    lines = SAMPLE_QA.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    questions = [r["question"] for r in records]
    per_lang = {r.get("lang", "en"): r["question"] for r in records}  # warm-up: jieba loads on first zh query
    kb = ensure_kb(args.kb)
    warm = list(per_lang.values())
    if args.compare:
        runs, failed = {}, False
        for name, batch_max in (("one_at_a_time", 1), ("batching", args.batch_max)):
            runs[name], bad = measure(args, kb, questions, warm, batch_max)
            failed |= bad
        out: dict = {"runs": runs, "comparison": compare(runs), "cpus": os.cpu_count()}
    else:
        out, failed = measure(args, kb, questions, warm, args.batch_max)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 1 if failed else 0


def report_hostile(summary: dict, hostile: list[dict], invariants: dict, kb: Path) -> bool:
    """Add the hostile part to ``summary``, print it; True when a check failed."""
    kinds = summarise_hostile(hostile)
    code = ("import json, sys; from kb_assistant import KnowledgeBase; "
            "print(json.dumps(KnowledgeBase(sys.argv[1]).verify()))")  # a fresh process: the saved files
    verify = json.loads(subprocess.run([sys.executable, "-c", code, str(kb)], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    queue = summary["queue"] or {}
    hr_ok = (invariants.get("hr_file_unchanged") is True and invariants.get("hr_doc_groups") == ["hr"]
             and invariants.get("public_same_name_upload_status") == 201)
    checks = {"normal_errors_0": summary["errors"] == 0,
              "every_hostile_refused_4xx": all(k["ok"] for k in kinds.values())
              and len(kinds) == len(HOSTILE) + 1,
              "hr_upload_unchanged": hr_ok,
              "indexes_verify": bool(verify.get("ok")),
              "slot_never_held_beyond_timeout":
                  queue.get("longest_hold_s", 0) <= summary["request_timeout_s"]}
    summary["hostile"] = {"requests": len(hostile), "kinds": kinds, "invariants": invariants,
                          "verify": verify, "checks": checks}
    print(f"{'hostile kind':<28} {'n':>5} {'4xx':>5} {'p50 ms':>8} {'p95 ms':>8}  statuses")
    for kind, k in kinds.items():
        print(f"{kind:<28} {k['n']:>5} {k['refused_4xx']:>5} {k['p50_ms']:>8.1f} {k['p95_ms']:>8.1f}  "
              f"{k['statuses']}{'' if k['ok'] else '  <-- NOT REFUSED'}")
    print(f"generator slot: longest hold {queue.get('longest_hold_s')} s (timeout "
          f"{summary['request_timeout_s']} s), {queue.get('timed_out')} stopped at the timeout")
    print("checks:", ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in checks.items()))
    return not all(checks.values())


if __name__ == "__main__":
    sys.exit(main())
