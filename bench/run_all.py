"""Run every benchmark once, in one process tree, and write BENCHMARKS.md.

    .venv/bin/python bench/run_all.py [--quick] [--out BENCHMARKS.md] [--raw FILE] [--only NAME,...]
    .venv/bin/python bench/run_all.py --from-raw FILE [--out BENCHMARKS.md]

Each benchmark runs as its own subprocess with `--json`: its human report streams to this
terminal (stderr) as it runs, and its figures come back as one JSON object on stdout.
Around each one the machine's load is sampled, so the file says how busy the machine was.
`--quick` takes fewer runs and shorter loads: a smoke run (about a minute), not figures to
publish. A full run takes about four minutes on a 2-core machine. `--raw` keeps every
figure as JSON; `--from-raw` writes the markdown again from such a file, running nothing.

Exit code: 0 when every benchmark produced figures (missed targets are written in the
file, as missed), 1 when one failed or timed out (the file still says which), 2 on usage.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import render  # noqa: E402


@dataclass(frozen=True)
class Bench:
    """A benchmark script and its arguments for a full and a quick run."""

    name: str
    script: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


BENCHES = [
    Bench("plan", "bench_plan.py", ("--runs", "11"), ("--runs", "2")),
    Bench("validate", "bench_core.py", ("--runs", "9"), ("--runs", "2")),
    Bench("budget", "budget.py"),
    Bench("webhooks", "bench_webhooks.py", ("--no-budget",), ("--no-budget", "--seconds", "1")),
    Bench("deploys", "bench_deploys.py", (), ("--merges", "2", "--commands", "1")),
    Bench("memory", "bench_memory.py"),
    Bench("replicas", "bench_replicas.py", (), ("--seconds", "1", "--lease", "5")),
]
TIMEOUT = 600.0  # seconds per benchmark; a full run of each takes well under a minute
LIBRARIES = ("aiohttp", "gidgethub", "gojsonnet", "PyYAML", "jsonschema", "cachetools")


# -- machine facts -----------------------------------------------------------------------------


def _command(*cmd: str) -> str:
    """First line of a tool's answer, or why there is none."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else f"unavailable (exit {done.returncode})"


def _proc_field(path: str, key: str) -> str | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":") if ":" in line else line.partition("=")
        if sep and name.strip() == key:
            return value.strip().strip('"')
    return None


def _gb(kb_field: str | None) -> float | None:
    return round(int(kb_field.split()[0]) / 1024**2, 1) if kb_field else None


def _libraries() -> str:
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} absent")
    try:
        from yaml import CSafeLoader  # noqa: F401

        versions.append("libyaml loader")
    except ImportError:
        versions.append("no libyaml (pure-Python YAML)")
    return ", ".join(versions)


def _commit() -> str:
    head = _command("git", "rev-parse", "--short=12", "HEAD")
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    # BENCHMARKS.md itself is what this run rewrites: its change does not make the tree dirty.
    dirty = [line for line in status.splitlines() if not line.endswith("BENCHMARKS.md")]
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def machine_facts() -> dict[str, Any]:
    """CPU, memory, OS, tool versions, the tree's commit and the load now."""
    helm = ROOT / ".cache" / "bin" / "helm"
    helm_cmd = str(helm) if helm.exists() else shutil.which("helm") or "helm"
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": _gb(_proc_field("/proc/meminfo", "MemTotal")),
        "memory_available_gb": _gb(_proc_field("/proc/meminfo", "MemAvailable")),
        "os": _proc_field("/etc/os-release", "PRETTY_NAME") or platform.platform(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "helm": _command(helm_cmd, "version", "--short"),
        "git": _command("git", "--version"),
        "libraries": _libraries(),
        "commit": _commit(),
        "loadavg_before": os.getloadavg()[0],
    }


# -- load around each benchmark ----------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    """The machine's CPU counters and this process's waited-for children's CPU, at one time."""

    wall: float
    busy: float  # seconds of CPU the whole machine spent busy, all CPUs
    steal: float
    children: float  # seconds of CPU of this run's waited-for process tree
    loadavg: float

    @classmethod
    def now(cls) -> CpuSample:
        """Sample the counters."""
        tick = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        idle = fields[3] + fields[4]
        steal = fields[7] if len(fields) > 7 else 0
        busy = sum(fields[:8]) - idle - steal
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            wall=time.monotonic(),
            busy=busy / tick,
            steal=steal / tick,
            children=usage.ru_utime + usage.ru_stime,
            loadavg=os.getloadavg()[0],
        )


def load_between(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Shares of the machine used by other processes and stolen, between two samples."""
    capacity = max(1e-9, (after.wall - before.wall) * (os.cpu_count() or 1))
    ours = after.children - before.children
    others = max(0.0, (after.busy - before.busy) - ours)
    return {
        "loadavg_before": before.loadavg,
        "loadavg_after": after.loadavg,
        "others_share": round(min(1.0, others / capacity), 3),
        "steal_share": round(min(1.0, (after.steal - before.steal) / capacity), 3),
        "own_cpu_s": round(ours, 2),
    }


# -- running -----------------------------------------------------------------------------------


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a benchmark printed last on stdout; ValueError if there is none."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    raise ValueError("no JSON object on stdout")


def run_bench(bench: Bench, *, quick: bool, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Run one benchmark with `--json`; its figures, or the reason there are none."""
    args = bench.quick if quick else bench.full
    cmd = [sys.executable, str(ROOT / "bench" / bench.script), *args, "--json"]
    print(f"\n== {bench.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HUBBOT_CACHE_DIR", None)  # each benchmark chooses cold and warm caches itself
    before = CpuSample.now()
    section: dict[str, Any] = {
        "command": " ".join(["python", *cmd[1:]]).replace(str(ROOT) + "/", "")
    }
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        section["error"] = f"timed out after {timeout:g} s"
    else:
        section["exit_code"] = done.returncode
        try:
            section["figures"] = last_json(done.stdout)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            section["error"] = f"exit code {done.returncode}, no figures ({exc})"
    after = CpuSample.now()
    section["seconds"] = after.wall - before.wall
    section["load"] = load_between(before, after)
    return section


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, write the markdown (and the raw figures if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--raw", type=Path, help="also write every figure as JSON here")
    parser.add_argument(
        "--from-raw", type=Path, help="run nothing: write the markdown from a --raw file"
    )
    parser.add_argument("--only", help="comma-separated benchmarks: " + ",".join(
        b.name for b in BENCHES))  # fmt: skip
    args = parser.parse_args(argv)
    if args.from_raw:
        args.out.write_text(render(json.loads(args.from_raw.read_text())))
        return 0
    chosen = BENCHES
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHES if b.name in names]
    started = time.monotonic()
    run: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "command": "python bench/run_all.py" + (" --quick" if args.quick else ""),
        "machine": machine_facts(),
        "sections": {},
    }
    for bench in chosen:
        run["sections"][bench.name] = run_bench(bench, quick=args.quick)
    run["machine"]["loadavg_after"] = os.getloadavg()[0]
    run["seconds"] = time.monotonic() - started
    args.out.write_text(render(run))
    if args.raw:
        args.raw.write_text(json.dumps(run, indent=2) + "\n")
    print(f"\nwrote {args.out} in {run['seconds']:.0f} s", file=sys.stderr)
    return 1 if any(sec.get("error") for sec in run["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
