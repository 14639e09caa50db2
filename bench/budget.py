"""The API-call budget scenario: a synchronize touching 100 values files, cold then warm.

A fresh git copy of the 2i2c snapshot is served by the GitHub double; a PR
changing 99 values files exists before the bot starts; then a fresh bot sees a
push of the 100th (cold: empty caches) and a push changing one more (warm).
Calls are read from the double's own request log. The tarball's second leg goes
to `/codeload/`, the double's stand-in for codeload.github.com (not the API
host), so it is listed but not counted, as the budget's rule says.

Used by tests/test_pr_budget.py (which asserts the budget) and by
bench/bench_webhooks.py (which reports it). Run alone, it prints the calls:

    .venv/bin/python bench/budget.py [--json]

With `--json` the report goes to stderr and stdout is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT_2I2C = ROOT.parent / "shared" / "fixtures" / "2i2c-infrastructure"
CHANGED = 100
SECRET = "budget-secret"
TARGETS = {"cold": 8, "warm": 5}


@dataclass
class BudgetRun:
    """What one scenario run saw."""

    cold: list[str]  # "METHOD /path" of every API call
    warm: list[str]
    cold_external: int  # requests to the codeload stand-in
    warm_external: int
    repo_files: int
    statuses: list[int] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)  # the PR as the double shows it
    violations: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures for a report."""
        return {
            "cold": len(self.cold),
            "warm": len(self.warm),
            "cold_with_codeload": len(self.cold) + self.cold_external,
            "warm_with_codeload": len(self.warm) + self.warm_external,
            "files": CHANGED,
            "repo_files": self.repo_files,
            "targets": TARGETS,
        }


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def fresh_repo(source: Path, target: Path) -> Path:
    """A new git repository (default branch main) holding a copy of `source`."""
    shutil.copytree(source, target, symlinks=True)
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "init")
    return target


def values_files(repo: Path) -> list[str]:
    """Non-secret values files of hubs and support releases, sorted."""
    return sorted(
        str(p.relative_to(repo))
        for p in (repo / "config" / "clusters").rglob("*.values.yaml")
        if "secret" not in p.name and "templates" not in p.parts
    )


async def run_budget_scenario(
    source: Path = SNAPSHOT_2I2C,
    *,
    on_app: Callable[[Any], None] | None = None,
    checker: Any = None,
) -> BudgetRun:
    """Run the scenario once; `on_app` sees the bot's started app before any webhook.

    With `checker` (the double's OpenAPI checker), every request is also checked against
    GitHub's REST description; what it found is in `BudgetRun.violations`.
    """
    import aiohttp
    from aiohttp import web

    from bot.sandbox.github.app import GitHubSandbox
    from bot.web.app import create_app
    from bot.web.keys import GITHUB, QUEUE, SERVICES
    from bot.web.settings import ServerSettings

    with tempfile.TemporaryDirectory() as tmp:
        repo = fresh_repo(source, Path(tmp) / "infra")
        files = values_files(repo)
        repo_files = sum(1 for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)

        def touched(path: str, note: str) -> str:
            return (repo / path).read_text() + f"\n# {note}\n"

        sandbox = GitHubSandbox(repo, webhook_secret=SECRET, checker=checker)
        await sandbox.start()
        settings = ServerSettings(
            app_id=str(sandbox.app_id),
            private_key=sandbox.private_key,
            webhook_secret=SECRET,
            github_url=sandbox.api_url,
        )
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        # Start-up deploy recovery is not part of the event's budget: wait for it to end, and
        # forget the token it fetched, so the first push is measured as in a fresh process.
        await asyncio.wait_for(app[SERVICES].deploys.wait_recovered(), 60)
        app[GITHUB].tokens.invalidate(sandbox.installation_id)
        if on_app is not None:
            on_app(app)  # started: its GitHub client factory exists
        bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:

                async def control(method: str, path: str, body: Any = None) -> Any:
                    url = f"{sandbox.control_url}{path}"
                    async with http.request(method, url, json=body) as resp:
                        assert resp.status < 300, await resp.text()
                        return await resp.json()

                async def push(number: int, path: str, note: str) -> list[Any]:
                    start = len(sandbox.requests)
                    body = {"files": {path: touched(path, note)}}
                    await control("POST", f"/pulls/{number}/commits", body)
                    assert await app[QUEUE].join(120), "the bot did not finish"
                    return list(sandbox.requests[start:])

                # The PR exists before this bot process sees anything.
                first = {p: touched(p, "budget") for p in files[: CHANGED - 1]}
                await control("POST", "/branches", {"name": "many", "files": first})
                number = (await control("POST", "/pulls", {"head": "many"}))["number"]
                await control("POST", "/webhook", {"url": f"{bot_url}/webhook"})
                cold = await push(number, files[CHANGED - 1], "cold")
                warm = await push(number, files[0], "warm")
                view = await control("GET", f"/pulls/{number}")
        finally:
            await runner.cleanup()
            await sandbox.close()

    def api(requests: list[Any]) -> list[str]:
        return [f"{r.method} {r.path}" for r in requests if not r.path.startswith("/codeload/")]

    return BudgetRun(
        cold=api(cold),
        warm=api(warm),
        cold_external=len(cold) - len(api(cold)),
        warm_external=len(warm) - len(api(warm)),
        repo_files=repo_files,
        statuses=[r.status for r in cold + warm],
        view=view,
        violations=list(sandbox.violations),
    )


async def measure_budget() -> dict[str, Any]:
    """The budget figures, for the benchmark report."""
    return (await run_budget_scenario()).summary()


def report(run: BudgetRun, out: TextIO) -> None:
    """The human report: counts against the budget, then every call."""
    figures = run.summary()
    print(
        f"GitHub API calls per synchronize ({CHANGED} values files changed,"
        f" {run.repo_files} files in the repository):",
        file=out,
    )
    for leg in ("cold", "warm"):
        print(
            f"  {leg}: {figures[leg]} (target <= {TARGETS[leg]}),"
            f" {figures[f'{leg}_with_codeload']} with the codeload leg",
            file=out,
        )
        for call in getattr(run, leg):
            print(f"    {call}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run the scenario once, print it; exit 1 if over budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="stdout: one JSON object of figures")
    args = parser.parse_args(argv)
    if not SNAPSHOT_2I2C.is_dir():
        print(f"no snapshot at {SNAPSHOT_2I2C}", file=sys.stderr)
        return 2
    run = asyncio.run(run_budget_scenario())
    report(run, sys.stderr if args.json else sys.stdout)
    figures = run.summary()
    if args.json:
        print(json.dumps({**figures, "calls": {"cold": run.cold, "warm": run.warm}}))
    over = figures["cold"] > TARGETS["cold"] or figures["warm"] > TARGETS["warm"]
    return 1 if over else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script: `bot` comes from this tree
    sys.exit(main())
