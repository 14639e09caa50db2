"""Memory benchmark: `hubbot serve` planning a 2i2c-sized PR, and the command line's peak.

    .venv/bin/python bench/bench_memory.py [--json]

1. **`hubbot serve` at work** (target < 150 MB). The double (`hubbot sandbox`) serves a
   fresh git copy of the 2i2c snapshot, and `hubbot serve` runs against it, each as its
   own process. A PR changing 100 values files is opened, then pushed to once more; after
   each, once its `hubbot/plan` check run has completed, the resident memory of the
   server process (current and peak, from /proc) and of its whole tree (the server and
   its Jsonnet worker processes, which render outside the server) is read.
2. **The command line.** Peak RSS of `hubbot validate` over the whole snapshot and of a
   one-hub `hubbot plan`, cold (no Jsonnet disk cache), as `wait4` reports it: the peak
   of the largest single process of the command's tree.

With `--json` the report goes to stderr and stdout is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.budget import CHANGED, SNAPSHOT_2I2C, fresh_repo, values_files  # noqa: E402

SECRET = "bench-memory-secret"
TARGETS = {"serve_rss_mb": 150.0}
ONE_HUB = "config/clusters/utoronto/r-prod.values.yaml"


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _mb(field: str) -> float:
    return round(int(field.split()[0]) / 1024, 1)


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc), children first."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:  # the task ended meanwhile
                continue
            found += children
            todo += children
    return found


def memory(pid: int) -> dict[str, Any]:
    """Current and peak RSS of a process, and the current RSS of its whole tree, in MB."""
    own = _status(pid)
    tree = _mb(own["VmRSS"])
    workers = 0
    for child in descendants(pid):
        try:
            tree += _mb(_status(child)["VmRSS"])
            workers += 1
        except (OSError, KeyError):  # ended meanwhile, or a zombie without VmRSS
            continue
    return {
        "rss_mb": _mb(own["VmRSS"]),
        "peak_rss_mb": _mb(own["VmHWM"]),
        "tree_rss_mb": round(tree, 1),
        "child_processes": workers,
    }


def _start(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        proc.wait()
        raise SystemExit(f"did not start: {' '.join(cmd[:4])}")
    return proc, json.loads(line)


def _call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def _planned(control: str, number: int, within: float = 180.0) -> None:
    """Wait until the PR's head has a completed `hubbot/plan` check run."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        view = _call("GET", f"{control}/pulls/{number}")
        runs = [r for r in view["check_runs"] if r["head_sha"] == view["head"]["sha"]]
        if runs and all(r["status"] == "completed" for r in runs):
            return
        time.sleep(0.1)  # polling another process's state, bounded by the deadline
    raise SystemExit(f"PR {number} was not planned within {within:g} s")


def serve_at_work(source: Path) -> dict[str, Any]:
    """RSS of `hubbot serve` idle, after a 100-file PR is opened, and after one more push."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBOT_")}
    env["PYTHONPATH"] = str(ROOT)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = fresh_repo(source, Path(tmp) / "infra")
        files = values_files(repo)[:CHANGED]
        key = Path(tmp) / "app.pem"
        sandbox, ready = _start(
            [sys.executable, "-m", "bot", "sandbox", "--repo", str(repo),
             "--webhook-url", "http://127.0.0.1:9/webhook", "--webhook-secret", SECRET,
             "--app-id", "77", "--private-key-out", str(key)],
            env,
        )  # fmt: skip
        bot = None
        try:
            bot_env = env | {
                "HUBBOT_APP_ID": "77",
                "HUBBOT_PRIVATE_KEY": str(key),
                "HUBBOT_WEBHOOK_SECRET": SECRET,
                "HUBBOT_GITHUB_URL": ready["api_url"],
                "HUBBOT_HOST": "127.0.0.1",
                "HUBBOT_PORT": "0",
            }
            cmd = [sys.executable, "-m", "bot", "serve", "--log-level", "WARNING"]
            bot, started = _start(cmd, bot_env)
            control = ready["control_url"]
            _call("POST", f"{control}/webhook", {"url": f"{started['url']}/webhook"})
            figures["idle"] = memory(bot.pid)
            edits = {p: (repo / p).read_text() + "\n# memory\n" for p in files}
            _call("POST", f"{control}/branches", {"name": "many", "files": edits})
            number = _call("POST", f"{control}/pulls", {"head": "many"})["number"]
            _planned(control, number)
            figures["opened"] = memory(bot.pid)
            again = {files[0]: edits[files[0]] + "# again\n"}
            _call("POST", f"{control}/pulls/{number}/commits", {"files": again})
            _planned(control, number)
            figures["synchronize"] = memory(bot.pid)
        finally:
            for proc in (bot, sandbox):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
    figures["files"] = len(files)
    return figures


def command_peak(args: list[str]) -> float:
    """Peak RSS in MB of one cold `python -m bot ...` process tree (its largest process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUBBOT_CACHE_DIR": "off"}
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):  # 1: findings, still a full run
            out.seek(0)
            raise SystemExit(f"hubbot {args[0]} failed: {out.read()[-800:].decode()}")
    return round(usage.ru_maxrss / 1024, 1)  # KB on Linux


def measure(source: Path) -> dict[str, Any]:
    """Every memory figure."""
    serve = serve_at_work(source)
    peak = max(serve[k]["peak_rss_mb"] for k in ("idle", "opened", "synchronize"))
    repo = str(source)
    return {
        "serve": serve,
        "serve_peak_rss_mb": peak,
        "cli": {
            "validate_peak_rss_mb": command_peak(["validate", "--repo", repo, "--format", "json"]),
            "plan_one_hub_peak_rss_mb": command_peak(
                ["plan", "--repo", repo, "--format", "json", "--changed", ONE_HUB]
            ),
        },
        "targets": TARGETS,
        "met": peak < TARGETS["serve_rss_mb"],
    }


def report(f: dict[str, Any], out: TextIO) -> None:
    """The human report."""
    serve = f["serve"]
    lines = [
        f"hubbot serve on a copy of the 2i2c snapshot ({serve['files']} values files in a PR):"
    ]
    for stage in ("idle", "opened", "synchronize"):
        m = serve[stage]
        lines.append(
            f"  {stage:12} RSS {m['rss_mb']:6.1f} MB, peak {m['peak_rss_mb']:6.1f} MB;"
            f" tree (with {m['child_processes']} child processes) {m['tree_rss_mb']:6.1f} MB"
        )
    verdict = "ok" if f["met"] else "MISSED"
    lines.append(
        f"  server peak {f['serve_peak_rss_mb']} MB (target < {TARGETS['serve_rss_mb']:g} MB)"
        f"  {verdict}"
    )
    cli = f["cli"]
    lines.append(
        f"command line, cold, largest process: validate {cli['validate_peak_rss_mb']} MB,"
        f" one-hub plan {cli['plan_one_hub_peak_rss_mb']} MB"
    )
    print("\n".join(lines), file=out)


def main() -> int:
    """Measure and print; exit 1 when the server's peak misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=SNAPSHOT_2I2C)
    parser.add_argument("--json", action="store_true", help="stdout: one JSON object of figures")
    args = parser.parse_args()
    if not args.repo.is_dir():
        print(f"no snapshot at {args.repo}", file=sys.stderr)
        return 2
    figures = measure(args.repo)
    report(figures, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
