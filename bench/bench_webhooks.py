"""Webhook ack benchmark: `hubbot serve` against a bare aiohttp handler, same machine, same run.

    .venv/bin/python bench/bench_webhooks.py [--seconds 5] [--rate 200] [--concurrency 32] [--json]

Both servers run as their own processes; the load generator is a third process
(an aiohttp client) so it does not share a loop with either server. It measures:
- throughput: closed loop, `--concurrency` connections, for `--seconds`;
- latency: open loop at `--rate` deliveries/s, timed from each request's scheduled
  send time (so a stalled server cannot hide its queueing), p50 and p99;
- RSS of `hubbot serve` (current and peak) after the load.
Deliveries are GitHub's real push example, validly signed, each with its own
delivery id, to a feature branch: hubbot verifies, parses, dedupes and queues
them, and its push handler has no GitHub call to make for such a ref.
It also runs the API-call budget scenario against the GitHub double (bench/budget.py,
asserted by tests/test_pr_budget.py) and reports calls per event, cold and warm.
With `--json` the report goes to stderr and stdout is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "samples" / "push" / "push.json"
SECRET = "bench-secret"
TARGETS = {"ratio": 0.5, "p99_ms": 50.0, "rss_mb": 150.0}


# -- the bare server ---------------------------------------------------------------------------


def run_bare_server() -> None:
    """A minimal aiohttp webhook receiver: read the body, answer 202."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"message": "accepted"}, status=202)

    async def main() -> None:
        app = web.Application(client_max_size=25 * 1024 * 1024)
        app.router.add_post("/webhook", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(json.dumps({"url": f"http://127.0.0.1:{port}", "port": port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the load generator ------------------------------------------------------------------------


def deliveries(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """`count` signed push deliveries with distinct ids."""
    data = json.loads(SAMPLE.read_text())
    data["ref"] = "refs/heads/feature"
    data["installation"] = {"id": 1}
    body = json.dumps(data).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    out = []
    for _ in range(count):
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": signature,
        }
        out.append((body, headers))
    return out


async def throughput(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """Closed loop: how many acks per second `concurrency` busy connections get."""
    import aiohttp

    pool = deliveries(200_000)
    statuses: dict[int, int] = {}
    next_item = 0
    stop_at = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_item
        while time.perf_counter() < stop_at:
            body, headers = pool[next_item % len(pool)]
            next_item += 1
            async with session.post(f"{url}/webhook", data=body, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await worker_warmup(session, url)
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    return {"rps": total / elapsed, "requests": total, "statuses": statuses}


async def worker_warmup(session: Any, url: str) -> None:
    """50 deliveries first, so connections are open and both servers' code paths warm."""
    for body, headers in deliveries(50):
        async with session.post(f"{url}/webhook", data=body, headers=headers) as resp:
            await resp.read()


async def latency(url: str, seconds: float, rate: float) -> dict[str, Any]:
    """Open loop at `rate`/s: latency from each request's scheduled time to its answer."""
    import aiohttp

    count = int(seconds * rate)
    pool = deliveries(count)
    results: list[float] = []
    statuses: dict[int, int] = {}

    async def one(session: aiohttp.ClientSession, at: float, item: Any) -> None:
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body, headers = item
        async with session.post(f"{url}/webhook", data=body, headers=headers) as resp:
            await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        results.append(time.perf_counter() - at)

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        await worker_warmup(session, url)
        start = time.perf_counter() + 0.05
        await asyncio.gather(*(one(session, start + i / rate, pool[i]) for i in range(count)))
    results.sort()
    return {
        "p50_ms": 1000 * statistics.median(results),
        "p99_ms": 1000 * results[min(len(results) - 1, int(len(results) * 0.99))],
        "max_ms": 1000 * results[-1],
        "requests": len(results),
        "statuses": statuses,
    }


def run_load(args: argparse.Namespace) -> None:
    """Entry point of the load-generator process: prints one JSON line."""
    if args.load_mode == "throughput":
        out = asyncio.run(throughput(args.load, args.seconds, args.concurrency))
    else:
        out = asyncio.run(latency(args.load, args.seconds, args.rate))
    print(json.dumps(out))


# -- the driver --------------------------------------------------------------------------------


def start(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and wait for its one JSON line with the URL."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"server did not start: {' '.join(cmd)}")
    return proc, json.loads(line)["url"]


def load(url: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the load generator in its own process against `url`; its figures."""
    cmd = [
        sys.executable,
        __file__,
        "--load",
        url,
        "--load-mode",
        mode,
        "--seconds",
        str(args.seconds),
        "--rate",
        str(args.rate),
        "--concurrency",
        str(args.concurrency),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def best(figures: dict[str, Any], key: str, result: dict[str, Any], by: str) -> None:
    """Keep the better of two runs (higher throughput, lower p99)."""
    old = figures.get(key)
    better = old is None or (result[by] > old[by] if by == "rps" else result[by] < old[by])
    if better:
        figures[key] = result


def wait_idle(bot_url: str, within: float = 120.0) -> None:
    """Wait until hubbot's queue is empty, so one phase's backlog never skews the next."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{bot_url}/readyz") as resp:
                state = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 503 while saturated: still has a body
            state = json.loads(exc.read())
        if state["queue_depth"] == 0 and state["queue_running"] == 0:
            return
        time.sleep(0.1)
    raise SystemExit("hubbot's queue did not drain")


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MB (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def private_key_file(folder: str) -> str:
    """A throwaway RSA key for the app, written to `folder`; its path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = os.path.join(folder, "bench.pem")
    Path(path).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


def main() -> int:
    """Measure both servers, interleaved; print the report (and JSON); exit 1 on a miss."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="stdout: one JSON object of figures")
    parser.add_argument(
        "--no-budget",
        dest="budget",
        action="store_false",
        help="skip counting API calls per event (needs the 2i2c snapshot in ../shared)",
    )
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--load-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        run_bare_server()
        return 0
    if args.load:
        run_load(args)
        return 0

    figures: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "seconds": args.seconds,
            "rate": args.rate,
            "concurrency": args.concurrency,
        },
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBOT_")}
        env |= {
            "HUBBOT_APP_ID": "1",
            "HUBBOT_PRIVATE_KEY": private_key_file(tmp),
            "HUBBOT_WEBHOOK_SECRET": SECRET,
            "HUBBOT_GITHUB_URL": "http://127.0.0.1:9",  # never called: push to a feature ref
            "HUBBOT_HOST": "127.0.0.1",
            "HUBBOT_PORT": "0",
            "HUBBOT_QUEUE_SIZE": "100000",
        }
        bot, bot_url = start([sys.executable, "-m", "bot", "serve", "--log-level", "WARNING"], env)
        bare, bare_url = start([sys.executable, __file__, "--bare-server"])
        try:
            # Interleaved, best of two: neither server gets the warmer machine.
            for _ in range(2):
                for name, url in (("bare", bare_url), ("hubbot", bot_url)):
                    best(figures, f"{name}_throughput", load(url, "throughput", args), "rps")
                    wait_idle(bot_url)
            for _ in range(2):
                for name, url in (("bare", bare_url), ("hubbot", bot_url)):
                    best(figures, f"{name}_latency", load(url, "latency", args), "p99_ms")
                    wait_idle(bot_url)
            rss, peak = rss_mb(bot.pid)
            figures["hubbot_rss_mb"] = round(rss, 1)
            figures["hubbot_peak_rss_mb"] = round(peak, 1)
        finally:
            for proc in (bot, bare):
                proc.terminate()
                proc.wait(timeout=30)
    figures["ratio"] = figures["hubbot_throughput"]["rps"] / figures["bare_throughput"]["rps"]
    if args.budget:
        sys.path.insert(0, str(ROOT))
        from bench.budget import SNAPSHOT_2I2C, measure_budget

        if SNAPSHOT_2I2C.is_dir():
            figures["api_calls"] = asyncio.run(measure_budget())
    report(figures, args, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures))
    return 0 if passed(figures) else 1


def passed(f: dict[str, Any]) -> bool:
    """Whether every ack target was met."""
    return bool(
        f["ratio"] >= TARGETS["ratio"]
        and f["hubbot_latency"]["p99_ms"] < TARGETS["p99_ms"]
        and f["hubbot_peak_rss_mb"] < TARGETS["rss_mb"]
    )


def report(f: dict[str, Any], args: argparse.Namespace, out: TextIO) -> None:
    """Print the figures with their targets."""

    def ok(good: bool) -> str:
        return "ok" if good else "MISSED"

    def lat(x: dict[str, Any]) -> str:
        return f"p50 {x['p50_ms']:6.2f} ms  p99 {x['p99_ms']:6.2f} ms  max {x['max_ms']:6.2f} ms"

    bt, ht = f["bare_throughput"], f["hubbot_throughput"]
    hl = f["hubbot_latency"]
    ratio_ok = f["ratio"] >= TARGETS["ratio"]
    p99_ok = hl["p99_ms"] < TARGETS["p99_ms"]
    rss_ok = f["hubbot_peak_rss_mb"] < TARGETS["rss_mb"]
    lines = [
        f"webhook ack benchmark ({f['machine']['cpus']} CPUs, Python {f['machine']['python']})",
        f"  throughput, {args.concurrency} connections, {args.seconds:g} s, best of 2:",
        f"    bare aiohttp  {bt['rps']:8.0f} acks/s  {bt['statuses']}",
        f"    hubbot serve  {ht['rps']:8.0f} acks/s  {ht['statuses']}",
        f"    ratio         {f['ratio']:8.2f}   (target >= {TARGETS['ratio']})  {ok(ratio_ok)}",
        f"  latency at {args.rate:g} deliveries/s for {args.seconds:g} s, from scheduled send:",
        f"    bare aiohttp  {lat(f['bare_latency'])}",
        f"    hubbot serve  {lat(hl)}  (target p99 < 50 ms)  {ok(p99_ok)}",
        f"  hubbot serve RSS {f['hubbot_rss_mb']} MB, peak {f['hubbot_peak_rss_mb']} MB"
        f" (target < 150 MB)  {ok(rss_ok)}",
    ]
    if "api_calls" in f:
        c = f["api_calls"]
        lines.append(
            f"  GitHub API calls per synchronize ({c['files']} values files changed,"
            f" {c['repo_files']} files in the repository):"
        )
        lines.append(f"    cold {c['cold']} (target <= 8), warm {c['warm']} (target <= 5)")
    print("\n".join(lines), file=out)


if __name__ == "__main__":
    sys.exit(main())
