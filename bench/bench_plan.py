"""Benchmark `hubbot plan` as a whole process on the real 2i2c snapshot (not a timed test).

Reports the median wall time of a one-hub plan and of an all-hubs plan (which
validates all 171 hubs), against the targets of issue 2 and against 2i2c's own
planner, whose code is not in the fixtures: its 0.57-0.91 s, measured on this
machine and quoted in the issue, is printed as the reference.

    .venv/bin/python bench/bench_plan.py [--runs N] [--repo DIR]

Each case runs cold (no Jsonnet disk cache) and warm (a fresh cache, filled once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPO = ROOT.parent / "shared" / "fixtures" / "2i2c-infrastructure"
REFERENCE_2I2C = (
    0.57,
    0.91,
)  # seconds, 2i2c's planner on this machine (issue 2); validates nothing

# (name, changed paths, hubs the plan must deploy, target seconds)
CASES = [
    ("one hub", ["config/clusters/utoronto/r-prod.values.yaml"], 3, 0.3),
    ("all hubs (validates 171)", ["helm-charts/basehub/values.yaml"], 171, 2.5),
]


def wall_time(repo: Path, changed: list[str], hubs: int, cache: str) -> float:
    """Seconds for one `python -m bot plan --changed ...` process, checked, start to exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUBBOT_CACHE_DIR": cache}
    cmd = [sys.executable, "-m", "bot", "plan", "--repo", str(repo), "--format", "json"]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "--changed", *changed], cwd=ROOT, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    try:
        plan = json.loads(proc.stdout)
    except ValueError:
        message = proc.stderr.decode()[-800:]
        raise SystemExit(f"hubbot plan failed ({proc.returncode}): {message}") from None
    if len(plan["staging"]) + len(plan["prod"]) != hubs:
        raise SystemExit(f"expected {hubs} hubs to deploy for {changed}, got another plan")
    return elapsed


def main() -> int:
    """Run every case `--runs` times and print medians, targets and the 2i2c ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    args = parser.parse_args()
    if not args.repo.is_dir():
        print(f"no snapshot at {args.repo}", file=sys.stderr)
        return 2
    low, high = REFERENCE_2I2C
    print(f"hubbot plan, whole process, median of {args.runs} runs ({os.cpu_count()} cores)")
    failed = False
    with tempfile.TemporaryDirectory() as warm:
        # cold: no Jsonnet disk cache, every release renders; warm: a second run on
        # the same machine, as an engineer re-running the command sees it.
        for cache, label in (("off", "cold"), (warm, "warm")):
            for _, changed, hubs, _ in CASES:  # the OS file cache, .pyc files, the disk cache
                wall_time(args.repo, changed, hubs, cache)
            for name, changed, hubs, target in CASES:
                times = [wall_time(args.repo, changed, hubs, cache) for _ in range(args.runs)]
                median = statistics.median(times)
                ok = median <= target
                failed |= not ok
                print(
                    f"  {label} {name:26} median {median:.3f} s"
                    f"  (min {min(times):.3f}, max {max(times):.3f})"
                    f"  target <= {target} s  {'ok' if ok else 'MISSED'}"
                    f"  ratio to 2i2c's {low} s: {median / low:.2f}"
                )
    print(f"  2i2c's own planner (reference, not run here): {low}-{high} s, validates nothing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
