#!/usr/bin/env python
"""Ingest throughput and peak memory: the local engine vs the Ray engine with 1 and 2 workers.

    python benchmarks/ingest_ray.py [--handbook-files 24] [--json benchmarks/results/ingest_ray.json]

One corpus (examples/sample_kb + the first N sect.*.html pages of the handbook in benchmarks/.corpus),
one fresh knowledge base per run, each run in its own subprocess, all in the same invocation:
  local        KnowledgeBase.ingest (parser thread + embedding in this process, torch on all cores)
  local-1t     the same with one torch thread (OMP_NUM_THREADS=1): a control for a loaded machine,
               where one multi-threaded process loses more to oversubscription than several 1-thread ones
  ray-1x1      engine="ray" on a local cluster: 1 embedding actor with 1 CPU
  ray-1x2      1 actor with 2 CPUs (torch threads = the local engine's)
  ray-2x1      2 actors with 1 CPU each
The local Ray cluster is started by the run (its start time is reported apart, not in the ingest time)
with logical CPUs = the actors' CPUs + 1 for parse tasks, whatever the physical cores. Ingest time
includes loading the model (in the driver for local, in each actor for Ray), not the refit of the
unknown gate that ``KnowledgeBase.ingest`` may run after a large ingest (turned off here). Peak RSS:
the driver's ``ru_maxrss``; for Ray also the largest embedding actor, the largest parse worker and the
sum over the cluster's processes, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"local": None, "local-1t": None, "ray-1x1": (1, 1.0), "ray-1x2": (1, 2.0), "ray-2x1": (2, 1.0)}


def corpus(handbook_files: int) -> list[str]:
    pages = sorted((ROOT / "benchmarks/.corpus/en-US").glob("sect.*.html"))[:handbook_files]
    if len(pages) < handbook_files:
        raise SystemExit("the handbook is missing: scripts/get_debian_handbook.sh")
    return [str(ROOT / "examples/sample_kb")] + [str(p) for p in pages]


class Sampler(threading.Thread):
    """Peak RSS of this process's descendants (the local Ray cluster), by role."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, tuple[str, float]] = {}
        self.total = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.wait(0.2):
            total = 0.0
            for proc in me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss / 2**20
                    name = " ".join(proc.cmdline())[:120]
                except psutil.Error:
                    continue
                total += rss
                old = self.peaks.get(proc.pid, ("", 0.0))
                role = name if "MapWorker" in name or "_parse_rows" in name or not old[0] else old[0]
                self.peaks[proc.pid] = (role, max(old[1], rss))
            self.total = max(self.total, total)

    def summary(self) -> dict[str, float]:
        embed = [r for n, r in self.peaks.values() if "MapWorker" in n]
        parse = [r for n, r in self.peaks.values() if "_parse_rows" in n or "ray::IDLE" in n]
        return {"actor_peak_rss_mb": round(max(embed, default=0.0), 1),
                "parse_worker_peak_rss_mb": round(max(parse, default=0.0), 1),
                "cluster_peak_rss_mb": round(self.total, 1)}


def child(config: str, paths: list[str], kb_dir: Path) -> dict:
    from kb_assistant import KnowledgeBase

    row: dict = {"config": config}
    sampler = None
    options = None
    if CONFIGS[config] is not None:
        import ray

        workers, cpus = CONFIGS[config]
        t0 = time.perf_counter()
        env = {k: os.environ[k] for k in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                          "TOKENIZERS_PARALLELISM") if k in os.environ}
        ray.init(address="local", num_cpus=int(workers * cpus) + 1, include_dashboard=False,
                 object_store_memory=256 * 2**20, runtime_env={"env_vars": env})
        row["cluster_start_s"] = round(time.perf_counter() - t0, 2)
        options = {"workers": workers, "cpus_per_worker": cpus}
        sampler = Sampler()
        sampler.start()
    kb = KnowledgeBase(kb_dir, {"gate": {"auto_refit_share": None}})  # no unknown-gate refit after ingest
    t0 = time.perf_counter()
    report = kb.ingest(paths, engine="local" if options is None else "ray", ray_options=options,
                       show_progress=False)
    seconds = time.perf_counter() - t0 - report.timings.get("gate_s", 0.0)
    row.update({"files": len(report.added), "failed": len(report.failed), "chunks": report.chunks_added,
                "ingest_s": round(seconds, 2), "chunks_per_s": round(report.chunks_added / seconds, 2),
                "timings": {k: round(v, 2) for k, v in report.timings.items()},
                "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
        row.update(sampler.summary())
        import ray

        ray.shutdown()
    ids = [r[0] for r in kb.docstore.conn.execute("SELECT chunk_id FROM chunks ORDER BY id")]
    row["chunk_ids_sha"] = __import__("hashlib").sha256("".join(ids).encode()).hexdigest()[:16]
    kb.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handbook-files", type=int, default=24)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=1, help="rounds over the configs (interleaved)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/ingest_ray.json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    paths = corpus(args.handbook_files)
    if args.child:
        print(json.dumps(child(args.child[0], paths, Path(args.child[1]))))
        return
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kb-ray-bench-") as tmp:
        for config in [c for _ in range(args.repeats) for c in args.configs]:
            cmd = [sys.executable, __file__, "--handbook-files", str(args.handbook_files), "--child", config,
                   str(Path(tmp) / f"{config}-{len(rows)}")]
            run_env = dict(env, OMP_NUM_THREADS="1") if config == "local-1t" else env
            out = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False)
            if out.returncode:
                raise SystemExit(f"{config} failed: {out.stderr[-3000:]}")
            row = dict(json.loads(out.stdout.strip().splitlines()[-1]), load_avg_1m=os.getloadavg()[0])
            print(json.dumps(row), flush=True)
            rows.append(row)
    medians = {c: statistics.median(r["chunks_per_s"] for r in rows if r["config"] == c)
               for c in args.configs}
    summary = {c: {"chunks_per_s": round(v, 2), "speed_vs_local": round(v / medians["local"], 2)
                   if medians.get("local") else None} for c, v in medians.items()}
    name = f"examples/sample_kb + {args.handbook_files} handbook pages"
    result = {"benchmark": "ingest_ray", "corpus": name,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
              "identical_chunk_ids": len({r["chunk_ids_sha"] for r in rows}) == 1,
              "median_by_config": summary, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
