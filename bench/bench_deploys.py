"""Deploy benchmarks: merge to first deploy, and how close a full rollout gets to ideal.

    .venv/bin/python bench/bench_deploys.py [--merges 7] [--commands 3] [--step-ms 50] [--json]

1. **Push webhook to first deploy started** (target < 2 s). The bot (`create_app`, real
   HTTP server) and the GitHub double run on loopback in this process; a PR changing one
   hub's values file of the example repository is merged through the double's control
   API, which sends the signed `push` webhook. Timed from the moment the bot queues that
   delivery to the moment the executor's `run()` is called for the merged SHA: GitHub
   reads (merged PR, tarballs of both commits), the semantic plan, the Deployment writes
   queued behind, `prepare` (the repository model at the SHA, the rendered command). The
   executor is a stand-in that returns at once, so one merge does not wait on the last.
   Median and max over `--merges` merges (the first one reads two tarballs cold).
2. **All-hubs rollout vs the ideal critical path** (target ≥ 0.9). Every release of the
   real 2i2c snapshot (its 171 hubs and 30 support charts, staging gates from the default
   settings, caps 10 / 3 per cluster) goes to one `Rollout` with an executor that sleeps
   `--step-ms` per target. Wall time against `schedule.ideal_makespan` for the same caps:
   once with the reporter stubbed (the driver alone), once with the real `GitHubReporter`
   writing every Deployment, status, comment and check to the double (same event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.deploys.executor import DeployJob, DeployResult, Executor  # noqa: E402

EXAMPLE = ROOT / "config"
SNAPSHOT_2I2C = ROOT.parent / "shared" / "fixtures" / "2i2c-infrastructure"
SECRET = "bench-deploys-secret"
TARGETS = {"first_deploy_s": 2.0, "rollout_ratio": 0.9}
STAGING_FILE = "config/clusters/uni-a/staging.values.yaml"


class Recorded(Executor):
    """Records when each job starts; sleeps `seconds`, then succeeds."""

    name = "bench"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: dict[str, float] = {}  # the first start per SHA
        self.runs: dict[str, int] = {}  # jobs run per SHA

    async def run(self, job: DeployJob) -> DeployResult:
        """Note the start (first per SHA), wait, succeed."""
        self.started.setdefault(job.sha, time.monotonic())
        self.runs[job.sha] = self.runs.get(job.sha, 0) + 1
        if self.seconds:
            await asyncio.sleep(self.seconds)
        return DeployResult("success", "exit code 0", f"deployed {job.target}\n")

    async def cancel(self, job_id: str) -> bool:
        """Nothing to stop."""
        return False


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def fresh_repo(source: Path, target: Path) -> Path:
    """A new git repository (branch main) holding a copy of `source`."""
    import shutil

    shutil.copytree(source, target, symlinks=True)
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "-qm", "init")
    return target


async def deploy_events(merges: int, commands: int) -> dict[str, Any]:
    """Merge to first deploy, and GitHub API calls per merge and per `/deploy staging`.

    Calls are every REST request the double answered from the event until the bot and
    its deploys are idle (a 304 counts as a call here, although GitHub does not charge
    it; the tarball's codeload leg is not counted). Each merge's PR is opened and settled
    first, so its plan is not counted.
    """
    import aiohttp
    from aiohttp import web

    from bot.deploys.service import DeployConfig, DeployService
    from bot.handlers.context import Services
    from bot.sandbox.github.app import GitHubSandbox
    from bot.web.app import create_app
    from bot.web.keys import QUEUE, SERVICES
    from bot.web.queue import Job
    from bot.web.settings import ServerSettings

    executor = Recorded(0.0)
    queued: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = fresh_repo(EXAMPLE, Path(tmp) / "infra")
        sandbox = GitHubSandbox(repo, webhook_secret=SECRET)
        await sandbox.start()
        settings = ServerSettings(
            app_id=str(sandbox.app_id),
            private_key=sandbox.private_key,
            webhook_secret=SECRET,
            github_url=sandbox.api_url,
        )
        service = DeployService(DeployConfig(), executor_factory=lambda repo, settings: executor)
        app = create_app(settings, services=Services(app_id=settings.app_id, deploys=service))
        queue_submit = app[QUEUE].submit

        def submit(job: Job) -> Job | None:
            if job.event == "push" and isinstance(job.payload, dict):
                queued.setdefault(str(job.payload.get("after")), time.monotonic())
            return queue_submit(job)

        app[QUEUE].submit = submit  # type: ignore[method-assign]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await asyncio.wait_for(app[SERVICES].deploys.wait_recovered(), 60)
        bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        text = (EXAMPLE / STAGING_FILE).read_text()
        seconds: list[float] = []
        calls: dict[str, list[int]] = {"opened": [], "merge": [], "synchronize": [], "command": []}
        targets: dict[str, list[int]] = {"merge": [], "command": []}
        listed: dict[str, list[str]] = {}  # the calls of the last event of each kind
        try:
            async with aiohttp.ClientSession() as http:

                async def control(method: str, path: str, body: Any = None) -> Any:
                    url = f"{sandbox.control_url}{path}"
                    async with http.request(method, url, json=body) as resp:
                        assert resp.status < 300, await resp.text()
                        return await resp.json()

                async def counted(kind: str, method: str, path: str, body: Any) -> Any:
                    """Act, wait until everything it caused is done, count the API calls."""
                    before = len(sandbox.requests)
                    answer = await control(method, path, body)
                    await sandbox.drain()
                    assert await app[QUEUE].join(60), "the bot did not finish"
                    await asyncio.wait_for(service.wait_idle(), 60)
                    made = [f"{r.method} {r.path}" for r in sandbox.requests[before:]]
                    # codeload.github.com is not the API host: listed, not counted (as budget.py)
                    calls[kind].append(sum(1 for c in made if " /codeload/" not in c))
                    listed[kind] = made
                    return answer

                def limit(n: int) -> dict[str, str]:
                    return {STAGING_FILE: text.replace("limit: 1G", f"limit: {n + 2}G")}

                await control("POST", "/webhook", {"url": f"{bot_url}/webhook"})
                for n in range(merges):
                    await control("POST", "/branches", {"name": f"m{n}", "files": limit(n)})
                    pull = await counted("opened", "POST", "/pulls", {"head": f"m{n}"})
                    path = f"/pulls/{pull['number']}/merge"
                    sha = (await counted("merge", "POST", path, {"user": "octocat"}))["sha"]
                    seconds.append(executor.started[sha] - queued[sha])
                    targets["merge"].append(executor.runs[sha])
                await control("POST", "/branches", {"name": "preview", "files": limit(99)})
                number = (await counted("opened", "POST", "/pulls", {"head": "preview"}))["number"]
                for n in range(commands):
                    push = {"files": limit(100 + n)}
                    await counted("synchronize", "POST", f"/pulls/{number}/commits", push)
                    head = (await control("GET", f"/pulls/{number}"))["head"]["sha"]
                    says = {"user": "octocat", "body": "/deploy staging"}
                    await counted("command", "POST", f"/pulls/{number}/comments", says)
                    targets["command"].append(executor.runs.get(head, 0))
        finally:
            await runner.cleanup()
            await sandbox.close()
    return {
        "first_deploy": {
            "merges": merges,
            "median_s": statistics.median(seconds),
            "max_s": max(seconds),
            "cold_s": seconds[0],
            "all_s": [round(s, 3) for s in seconds],
        },
        "api_calls": {
            kind: {
                "all": counts,
                "median": statistics.median(counts),
                "first": counts[0],
                "targets": targets.get(kind),
                "last": listed[kind],
            }
            for kind, counts in calls.items()
            if counts
        },
    }


def all_steps() -> list[Any]:
    """Every release of the 2i2c snapshot as schedule steps (support, staging, prod)."""
    from bot.core.model import load_repository
    from bot.core.planner import settings_of
    from bot.core.snapshot import DirSnapshot
    from bot.deploys.schedule import Step

    snapshot = DirSnapshot(SNAPSHOT_2I2C)
    settings, _ = settings_of(snapshot)
    repo = load_repository(snapshot, settings)
    steps = []
    for name, cluster in sorted(repo.clusters.items()):
        if cluster.support_values_files is not None:
            steps.append(Step(name, None, "support"))
        for hub in cluster.hubs:
            stage = "staging" if settings.is_staging(hub.name) else "prod"
            steps.append(Step(name, hub.name, stage))
    return steps


async def rollout(step_seconds: float, *, reporting: bool) -> dict[str, Any]:
    """Wall time of one all-hubs rollout against the ideal for the same caps."""
    from bot.core.settings import DeploySettings
    from bot.deploys.rollout import Rollout
    from bot.deploys.schedule import Step, ideal_makespan

    steps = all_steps()
    caps = DeploySettings()
    caps_kw = {
        "max_parallel": caps.max_parallel,
        "max_parallel_per_cluster": caps.max_parallel_per_cluster,
    }
    ideal = ideal_makespan(steps, duration=step_seconds, **caps_kw)

    async def prepare(step: Step) -> DeployJob:
        return DeployJob(
            f"j{step.wave}-{step.key}", "o/r", step.cluster, step.hub, step.sha, "true", 60.0
        )

    executor = Recorded(step_seconds)
    if not reporting:
        reporter: Any = _Silent()
        began = time.monotonic()
        driver = Rollout(executor=executor, prepare=prepare, reporter=reporter, **caps_kw)
        await driver.submit(steps, sha="f" * 40, source="bench")
        await driver.wait_idle()
        wall = time.monotonic() - began
        await driver.close()
        requests: list[str] = []
    else:
        wall, requests = await _with_reporting(steps, executor, prepare, caps_kw)
    return {
        "targets": len(steps),
        "clusters": len({s.cluster for s in steps}),
        "ideal_s": round(ideal, 3),
        "wall_s": round(wall, 3),
        "ratio": round(ideal / wall, 3),
        "github_requests": len(requests),
        "github_writes": sum(1 for method in requests if method != "GET"),
        "max_parallel": caps.max_parallel,
        "max_parallel_per_cluster": caps.max_parallel_per_cluster,
    }


class _Silent:
    async def queued(self, waves: Any) -> None:
        """Nothing to report."""

    async def started(self, step: Any, job: Any) -> None:
        """Nothing to report."""

    async def finished(self, step: Any, outcome: Any) -> None:
        """Nothing to report."""


async def _with_reporting(
    steps: list[Any], executor: Executor, prepare: Callable[..., Any], caps: dict[str, int]
) -> tuple[float, list[str]]:
    """The same rollout reported by the real reporter to the double, in its own process.

    Returns the wall time and the method of every request made from the rollout's start
    until its reports were flushed.

    (GitHub is another machine: the double must not share the bot's event loop or core.)
    """
    import aiohttp

    from bot.deploys.reporter import GitHubReporter
    from bot.deploys.rollout import Rollout
    from bot.github.comments import CommentCache
    from bot.github.factory import GitHubFactory
    from bot.github.snapshot import RepoRef

    with tempfile.TemporaryDirectory() as tmp:
        repo = fresh_repo(EXAMPLE, Path(tmp) / "infra")
        key = Path(tmp) / "app.pem"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "sandbox", "--repo", str(repo),
            "--webhook-url", "http://127.0.0.1:9/webhook", "--webhook-secret", SECRET,
            "--app-id", "77", "--private-key-out", str(key),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        try:
            async with aiohttp.ClientSession() as session:
                factory = GitHubFactory(
                    session, app_id="77", private_key=key.read_text(), base_url=ready["api_url"]
                )
                gh = factory.for_installation(int(ready["installation_id"]))
                info = await gh.getitem("/installation/repositories")
                item = info["repositories"][0]
                ref = RepoRef(item["owner"]["login"], item["name"], item["url"])
                sha = _git(repo, "rev-parse", "main").strip()
                reporter = GitHubReporter(gh, ref, comments=CommentCache())
                driver = Rollout(executor=executor, prepare=prepare, reporter=reporter, **caps)
                origin = reporter.new_origin(
                    kind="merge", sha=sha, actor="bench", pr=None,
                    asked=frozenset(s.key for s in steps),
                )  # fmt: skip
                async with session.get(f"{ready['control_url']}/requests") as resp:
                    first = len(await resp.json())  # the token and the lookup above
                began = time.monotonic()
                reporter.expect(origin)
                await driver.submit(steps, sha=sha, source="bench")
                await driver.wait_idle()
                wall = time.monotonic() - began
                await reporter.flush()
                await driver.close()
                async with session.get(f"{ready['control_url']}/requests") as resp:
                    methods = [r["method"] for r in (await resp.json())[first:]]
        finally:
            proc.terminate()
            await proc.wait()
    return wall, methods


def report(results: dict[str, Any], out: TextIO) -> None:
    """The human report."""
    first = results["first_deploy"]
    step_ms = results["settings"]["step_ms"]
    lines = [
        f"push webhook → first deploy started, {first['merges']} merges of the example:",
        f"  median {first['median_s']:.3f} s, max {first['max_s']:.3f} s "
        f"(first, cold: {first['cold_s']:.3f} s)   target < {TARGETS['first_deploy_s']} s",
        "GitHub API calls per event on the example (until the bot and its deploys are idle):",
    ]
    for kind, c in results["api_calls"].items():
        deployed = f", targets deployed {c['targets']}" if c["targets"] else ""
        lines.append(f"  {kind:12} median {c['median']:g}, each {c['all']}{deployed}")
    for key, label in (("rollout", "driver alone"), ("rollout_reported", "reported to GitHub")):
        if key in results:
            r = results[key]
            lines.append(
                f"all-hubs rollout of the 2i2c snapshot ({r['targets']} targets, "
                f"{r['clusters']} clusters, {step_ms:g} ms each, {label}):"
            )
            extra = ""
            if r["github_requests"]:
                extra = (
                    f", {r['github_requests']} GitHub requests ({r['github_writes']} writes),"
                    f" {r['github_requests'] / r['targets']:.1f} per target"
                )
            lines.append(
                f"  wall {r['wall_s']:.3f} s vs ideal {r['ideal_s']:.3f} s: ratio {r['ratio']:.3f}"
                f"   target ≥ {TARGETS['rollout_ratio']}{extra}"
            )
    print("\n".join(lines), file=out)


def passed(results: dict[str, Any]) -> bool:
    """Whether every deploy target was met."""
    rollouts = [results[k] for k in ("rollout", "rollout_reported") if k in results]
    return results["first_deploy"]["median_s"] < TARGETS["first_deploy_s"] and all(
        r["ratio"] >= TARGETS["rollout_ratio"] for r in rollouts
    )


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every deploy benchmark; print the report (and with `--json`, the figures)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--merges", type=int, default=7)
    parser.add_argument("--commands", type=int, default=3, help="`/deploy staging` comments")
    parser.add_argument("--step-ms", type=float, default=50.0)
    parser.add_argument("--json", action="store_true", help="stdout: one JSON object of figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = await deploy_events(args.merges, args.commands)
    if SNAPSHOT_2I2C.is_dir():
        step = args.step_ms / 1000
        results["rollout"] = await rollout(step, reporting=False)
        results["rollout_reported"] = await rollout(step, reporting=True)
    results["targets"] = TARGETS
    results["settings"] = {"step_ms": args.step_ms, "commands": args.commands}
    results["met"] = passed(results)
    report(results, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main())["met"] else 1)
