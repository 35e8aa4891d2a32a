"""The SIGKILL campaign of ``tests/test_crash.py`` at the issue's size, with its figures saved.

    python benchmarks/crash_campaign.py                  # 100 kills -> benchmarks/results/crash_campaign.json
    python benchmarks/crash_campaign.py --kills 20 --out /tmp/crash.json

Runs the slow test with ``KB_CRASH_KILLS`` and ``KB_CRASH_JSON`` set; the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "crash_campaign.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=100, help="SIGKILLs that land mid-work (default 100)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON figures go")
    args = ap.parse_args()
    env = dict(os.environ, KB_CRASH_KILLS=str(args.kills), KB_CRASH_JSON=str(args.out.resolve()),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "tests/test_crash.py", "-m", "slow", "-q", "-s",
           "-p", "no:cacheprovider"]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
