"""Benchmark `hubbot validate` on the real 2i2c snapshot (not a timed test).

Prints the median whole-process wall time of `python -m bot validate` over the
whole snapshot (171 hubs and 30 support releases, Jsonnet included) against the
issue's 2 s target, the CPU it used (the command and its Jsonnet workers), and a
breakdown of where the time goes, each part measured cold in a fresh process:
imports, YAML loading, Jsonnet rendering, schema checks.

    .venv/bin/python bench/bench_core.py [--runs N] [--repo DIR] [--json]

"Cold" runs disable the on-disk Jsonnet cache (HUBBOT_CACHE_DIR=off); "warm"
runs use a filled one, as repeated local runs and CI with a cached folder do.
The machine's load average is printed first: other processes on a 2-core machine
change these figures a lot. With `--json` the report goes to stderr and stdout is one
JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPO = ROOT.parent / "shared" / "fixtures" / "2i2c-infrastructure"
TARGET_SECONDS = 2.0


def validate_once(repo: Path, cache: str = "off") -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `python -m bot validate` process, checked."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUBBOT_CACHE_DIR": cache}
    cmd = [sys.executable, "-m", "bot", "validate", "--repo", str(repo), "--format", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"hubbot validate failed ({proc.returncode}): {proc.stderr.decode()[-800:]}"
        )
    document = json.loads(proc.stdout)
    if (document["clusters"], document["hubs"]) != (30, 171):
        raise SystemExit(f"unexpected counts: {document['clusters']}, {document['hubs']}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def breakdown(repo: Path) -> dict[str, float]:
    """Seconds per stage, each cold, in this (fresh) process: run as a child."""
    import gc

    gc.disable()  # as the command does
    times: dict[str, float] = {}
    start = time.perf_counter()
    from bot.core import filecache
    from bot.core.jsonnet_pool import ProcessRenderer
    from bot.core.model import load_repository
    from bot.core.settings import Settings
    from bot.core.snapshot import DirSnapshot
    from bot.core.validate import check_values, files_to_check
    from bot.core.values import build, release_sources
    from bot.core.yamlload import YamlProblem

    times["imports"] = time.perf_counter() - start
    start = time.perf_counter()
    repo_model = load_repository(DirSnapshot(repo), Settings())
    sources = release_sources(repo_model, None)
    for path in files_to_check(repo_model, None, sources):
        if path.endswith((".yaml", ".yml", ".json")):
            with contextlib.suppress(KeyError, YamlProblem):  # findings do not matter here
                filecache.parse(repo_model.snapshot, path)
    times["yaml (all files, incl. 249 encrypted)"] = time.perf_counter() - start
    renderer = ProcessRenderer()
    jobs = [job for s in sources for job in s.jobs]
    jobs.sort(key=lambda j: -len(j.source))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    renderer.prefetch(jobs)
    for job in jobs:
        renderer.render(job)
    times[f"jsonnet ({len(jobs)} renders, 2 workers)"] = time.perf_counter() - start
    renderer.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    times["  jsonnet CPU in workers"] = after.ru_utime - before.ru_utime
    start = time.perf_counter()
    effective = [build(repo_model, s, renderer=renderer) for s in sources]
    times["merge (201 releases, rendered)"] = time.perf_counter() - start
    start = time.perf_counter()
    for values in effective:
        check_values(repo_model, values)
    times["schema (201 releases)"] = time.perf_counter() - start
    return times


def measure(repo: Path, runs: int) -> dict[str, Any]:
    """Cold and warm medians (wall and CPU) and the cold breakdown by stage."""
    load = os.getloadavg()[0]
    validate_once(repo)  # warm the OS file cache and .pyc files
    cold = [validate_once(repo) for _ in range(runs)]
    with tempfile.TemporaryDirectory() as cache:
        validate_once(repo, cache)  # fills the cache
        warm = [validate_once(repo, cache) for _ in range(runs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, __file__, "--breakdown-child", "--repo", str(repo)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    median = statistics.median(wall for wall, _ in cold)
    return {
        "runs": runs,
        "load_average": load,
        "target_s": TARGET_SECONDS,
        "met": median <= TARGET_SECONDS,  # the target is for cold runs
        "cold": _summary(cold),
        "warm": _summary(warm),
        "breakdown_s": json.loads(child.stdout),
    }


def _summary(runs: list[tuple[float, float]]) -> dict[str, float]:
    walls = [wall for wall, _ in runs]
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_median_s": statistics.median(cpu for _, cpu in runs),
    }


def report(f: dict[str, Any], out: TextIO) -> None:
    """The human report."""
    cold, warm = f["cold"], f["warm"]
    lines = [
        f"load average {f['load_average']:.2f} on {os.cpu_count()} cores",
        f"hubbot validate, whole snapshot, whole process, median of {f['runs']} runs",
        f"  cold (no Jsonnet cache): wall median {cold['median_s']:.3f} s"
        f" (min {cold['min_s']:.3f}, max {cold['max_s']:.3f})"
        f"  target <= {f['target_s']} s  {'ok' if f['met'] else 'MISSED'}",
        f"    CPU median {cold['cpu_median_s']:.3f} s (command + Jsonnet workers)",
        f"  warm (Jsonnet cache filled): wall median {warm['median_s']:.3f} s"
        f" (min {warm['min_s']:.3f}, max {warm['max_s']:.3f})",
        "breakdown, each stage alone and cold (stages overlap in the command):",
    ]
    lines += [f"  {stage:42} {seconds:.3f} s" for stage, seconds in f["breakdown_s"].items()]
    print("\n".join(lines), file=out)


def main() -> int:
    """Measure and print; exit 1 when the median misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--json", action="store_true", help="stdout: one JSON object of figures")
    parser.add_argument("--breakdown-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.repo.is_dir():
        print(f"no snapshot at {args.repo}", file=sys.stderr)
        return 2
    if args.breakdown_child:
        print(json.dumps(breakdown(args.repo)))
        return 0
    figures = measure(args.repo, args.runs)
    report(figures, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
