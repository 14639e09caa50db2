"""Helpers shared by the end-to-end tests: the GitHub double and `hubbot serve`, wired.

The bot and the double run in this process on real sockets. `start_stack` waits until the
bot's start-up deploy recovery has ended, so tests that count requests count only theirs.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.github.client import RetryPolicy
from bot.handlers.context import Services
from bot.web.app import create_app
from bot.web.keys import GITHUB, QUEUE, SERVICES
from bot.web.settings import ServerSettings

SECRET = "e2e-webhook-secret"
MARKER = "<!-- hubbot:plan -->"
STAGING = "config/clusters/uni-a/staging.values.yaml"
STAGING_TEXT = "jupyterhub:\n  singleuser:\n    memory:\n      guarantee: 512M\n      limit: 1G\n"
# A lost write lands within late_write_seconds (GitHub's 10 s by default; the double is quick).
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=2.0, late_write_seconds=0.1)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def fresh_repo(source: Path, target: Path) -> Path:
    """A new git repository (default branch main) holding a copy of `source`."""
    shutil.copytree(source, target, symlinks=True)
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "init")
    return target


@dataclass
class Stack:
    """The double and the bot, wired to each other, and a session to drive them."""

    sandbox: Any
    bot_url: str
    app: web.Application
    http: aiohttp.ClientSession
    tokens: list[str]

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.sandbox.control_url}{path}"
        async with self.http.request(method, url, json=body) as resp:
            data = await resp.json()
            assert resp.status < 300, data
            return data

    async def settle(self, within: float = 60) -> None:
        """Wait until the bot has handled everything it accepted."""
        assert await self.app[QUEUE].join(within), "the bot did not finish in time"

    async def deployed(self, within: float = 120.0) -> None:
        """Wait until the bot handled everything and every deploy it queued ended, reported."""
        await self.settle()
        await asyncio.wait_for(self.app[SERVICES].deploys.wait_idle(), within)

    async def pull(self, number: int) -> dict[str, Any]:
        data: dict[str, Any] = await self.control("GET", f"/pulls/{number}")
        return data

    def requests_since(self, index: int) -> list[Any]:
        return self.sandbox.requests[index:]


async def start_stack(
    repo: Path,
    *,
    checker: Any = None,
    policy: RetryPolicy = FAST,
    services: Services | None = None,
    sandbox: Any = None,
    **server: Any,
) -> tuple[Any, web.AppRunner]:
    """The double (checking every request against GitHub's REST description) and the bot.

    `server` overrides `ServerSettings` fields; `sandbox` reuses a running double (a
    restarted bot); `services` injects the bot's services.
    """
    from bot.sandbox.github.app import GitHubSandbox

    if sandbox is None:
        sandbox = GitHubSandbox(repo, webhook_secret=SECRET, checker=checker)
        await sandbox.start()
    settings = ServerSettings(
        app_id=str(sandbox.app_id),
        private_key=sandbox.private_key,
        webhook_secret=SECRET,
        github_url=sandbox.api_url,
        workers=server.pop("workers", 2),
        **server,
    )
    app = create_app(settings, policy=policy, services=services)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await asyncio.wait_for(app[SERVICES].deploys.wait_recovered(), 60)
    return sandbox, runner


def record_tokens(app: web.Application, seen: list[str]) -> None:
    """Keep every installation token the bot receives, to scan logs and pages for them."""
    tokens = app[GITHUB].tokens
    seen.extend(token for token, _ in tokens._cache.values())  # fetched at start-up (recovery)
    fetch = tokens._fetch

    async def recording(installation_id: int) -> dict[str, Any]:
        answer = await fetch(installation_id)
        seen.append(str(answer.get("token")))
        return answer

    tokens._fetch = recording


def plan_runs(view: dict[str, Any], sha: str) -> list[dict[str, Any]]:
    """The `hubbot/plan` check runs of a PR view on one head SHA."""
    return [r for r in view["check_runs"] if r["name"] == "hubbot/plan" and r["head_sha"] == sha]
