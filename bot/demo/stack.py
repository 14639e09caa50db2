"""The demo's moving parts on loopback: the GitHub double and the real bot, wired by webhooks.

The double (`GitHubSandbox`) serves the demo's repository; the bot is `create_app`
(what `hubbot serve` runs) on a real socket, with a fresh app key and a random
webhook secret, so every webhook is signed and checked. The demo acts and reads only
through the double's control API, as a user or an outside check would.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from bot.sandbox.github import GitHubSandbox
from bot.web.app import create_app
from bot.web.settings import ServerSettings

T = TypeVar("T")
OWNER = "example-org"
NAME = "infrastructure"
APP_ID = 271828
POLL_FIRST, POLL_MAX = 0.02, 0.2  # seconds between looks while waiting on a condition


class StepFailed(Exception):
    """A step did not behave as expected: what was expected, and what was seen instead."""

    def __init__(self, expected: str, seen: str):
        super().__init__(expected)
        self.expected = expected
        self.seen = seen


class ControlError(StepFailed):
    """The double's control API refused a call the demo made."""


@dataclass
class Stack:
    """A running double and bot, and a client session to drive them."""

    sandbox: GitHubSandbox
    runner: web.AppRunner
    http: aiohttp.ClientSession
    bot_url: str

    @property
    def control_url(self) -> str:
        """The double's control API root."""
        return self.sandbox.control_url

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the control API; a refusal raises `ControlError` with GitHub's message."""
        url = f"{self.control_url}{path}"
        async with self.http.request(method, url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 300:
                message = data.get("message") if isinstance(data, dict) else data
                raise ControlError(f"{method} {path} to succeed", f"{resp.status}: {message}")
            return data

    async def pull(self, number: int) -> dict[str, Any]:
        """A pull request's whole visible state."""
        view: dict[str, Any] = await self.control("GET", f"/pulls/{number}")
        return view

    async def wait_for(
        self,
        fetch: Callable[[], Awaitable[Any]],
        check: Callable[[Any], T | None],
        *,
        expected: str,
        describe: Callable[[Any], str],
        within: float,
    ) -> T:
        """Look again and again until `check(fetch())` gives something; else `StepFailed`."""
        deadline = time.monotonic() + within
        delay = POLL_FIRST
        while True:
            state = await fetch()
            found = check(state)
            if found is not None and found is not False:
                return found
            if time.monotonic() >= deadline:
                raise StepFailed(expected, describe(state))
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, POLL_MAX)

    async def close(self) -> None:
        """Stop the bot (draining its queue), then the double."""
        await self.runner.cleanup()
        await self.sandbox.close()
        await self.http.close()


async def start_stack(repo: Path, *, users: dict[str, str]) -> Stack:
    """Start the double on `repo` and the bot pointed at it; create `users` (login: permission)."""
    secret = secrets.token_urlsafe(24)
    sandbox = GitHubSandbox(repo, owner=OWNER, name=NAME, app_id=APP_ID, webhook_secret=secret)
    await sandbox.start()
    # Bound before the app exists, so its public URL (the deploy log links) has the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        bot_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = ServerSettings(
            app_id=str(sandbox.app_id),
            private_key=sandbox.private_key,
            webhook_secret=secret,
            github_url=sandbox.api_url,
            host="127.0.0.1",
            port=int(sock.getsockname()[1]),
            public_url=bot_url,
        )
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        await sandbox.close()
        raise
    stack = Stack(sandbox, runner, aiohttp.ClientSession(), bot_url)
    try:
        await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
        for login, permission in users.items():
            await stack.control("POST", "/users", {"login": login, "permission": permission})
    except BaseException:
        await stack.close()
        raise
    return stack
