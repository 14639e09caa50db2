"""The fault harness: run a scenario against the GitHub double and the real bot, list the API
calls of a clean run, then run it again with a fault at each call in turn.

A *scenario* is an async function of a `Stack` that makes the bot do its work (open a PR,
merge one, comment a command). `run_scenario` gives it a fresh double and bot over a copy of
a template repository, so every run sees the same commits (the same SHAs, the same paths) and
a clean run's calls name the calls of every faulted run. `Call.fault(kind)` is the body of
`POST /_sandbox/faults` that hits exactly that call (its method, its path, and `skip` for the
calls before it on the same path). Part 2 (rollouts) reuses this with other scenarios.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.github.client import RetryPolicy
from bot.web.keys import METRICS
from tests.e2e_support import MARKER, SECRET, Stack, record_tokens, start_stack
from tests.hardening.support import LoopWatch, RecordingChecker, handler_errors, wait_until

# The bot gives up on a request after TIMEOUT s; a delayed fault waits DELAY s: a timeout.
# Both leave room for a loaded machine (several runs share one loop, helm runs beside it):
# a request that is only slow must not time out, and a late write must land in its window.
TIMEOUT = 1.0
DELAY = 2.0
POLICY = RetryPolicy(
    attempts=3,
    base_delay=0.01,
    max_delay=0.05,
    max_rate_limit_wait=5.0,
    timeout=TIMEOUT,
    download_timeout=TIMEOUT,
    # A timed-out write lands DELAY - TIMEOUT s after we give up (GitHub: within 10 s).
    late_write_seconds=DELAY + 1.0,
)


def path_pattern(path: str) -> str:
    """A regex for `path` in which numeric segments (ids the double numbers) match any id.

    Ids of comments and check runs come from one counter that faults draw on too, so they
    differ between runs; SHAs, names and PR numbers do not.
    """
    parts = [r"\d+" if part.isdigit() else re.escape(part) for part in path.split("/")]
    return "^" + "/".join(parts) + "$"


@dataclass(frozen=True, slots=True)
class Call:
    """One API request the bot made: method, path, and how many earlier ones matched it."""

    index: int
    method: str
    path: str
    occurrence: int

    @property
    def pattern(self) -> str:
        """The path as a regex that matches this call in any run (see `path_pattern`)."""
        return path_pattern(self.path)

    @property
    def label(self) -> str:
        """`#i METHOD /path` with SHAs shortened, for reports."""
        path = re.sub(r"[0-9a-f]{40}", lambda m: m.group(0)[:7], self.path)
        return f"#{self.index} {self.method} {path}"

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is this call (in any run)."""
        return method == self.method and re.search(self.pattern, path) is not None

    def fault(self, kind: FaultKind) -> dict[str, Any]:
        """The fault that hits exactly this call (the next `kind.times` attempts of it)."""
        body: dict[str, Any] = {
            "method": self.method,
            "path": self.pattern,
            "skip": self.occurrence,
            "times": kind.times,
        }
        if kind.status is not None:
            body["status"] = kind.status
        if kind.delay:
            body["delay_seconds"] = kind.delay
        if kind.headers:
            body["headers"] = dict(kind.headers)
        return body


def calls_of(requests: Sequence[Any]) -> list[Call]:
    """The calls recorded by the double (its `requests`), numbered with their occurrences."""
    seen: dict[tuple[str, str], int] = {}
    calls = []
    for index, request in enumerate(requests):
        key = (request.method, path_pattern(request.path))
        calls.append(Call(index, request.method, request.path, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return calls


@dataclass(frozen=True, slots=True)
class FaultKind:
    """A way GitHub fails: a status, a delay past the bot's timeout, or both, `times` in a row.

    `recoverable` kinds stay within the bot's retries: the run must end as a clean run does.
    """

    name: str
    status: int | None = None
    delay: float = 0.0
    times: int = 1
    headers: tuple[tuple[str, str], ...] = ()
    recoverable: bool = True


KINDS = {
    kind.name: kind
    for kind in (
        FaultKind("502", status=502),
        # Served after the bot gave up: a write applies although the bot saw a timeout.
        FaultKind("timeout", delay=DELAY),
        FaultKind("403-secondary-limit", status=403, headers=(("Retry-After", "0"),)),
        FaultKind("429-secondary-limit", status=429, headers=(("Retry-After", "0"),)),
        # Every attempt the bot makes at this call fails: more than it retries.
        FaultKind("502-every-attempt", status=502, times=POLICY.attempts, recoverable=False),
    )
}


@dataclass
class RunResult:
    """What one run left behind: the calls, the PR's visible state, and what went wrong."""

    calls: list[Call]
    view: dict[str, Any]
    loop_errors: str = ""
    violations: list[str] = field(default_factory=list)
    handler_errors: int = 0
    tokens: list[str] = field(default_factory=list)
    exchanges: RecordingChecker | None = None
    faults_fired: int = 0  # requests the injected faults hit
    deployments: list[dict[str, Any]] = field(default_factory=list)  # all, with statuses
    faults_left: list[dict[str, Any]] = field(default_factory=list)  # armed, never (fully) hit

    @property
    def head_sha(self) -> str:
        """The PR's head SHA."""
        return str(self.view["head"]["sha"])

    @property
    def plan_comments(self) -> list[dict[str, Any]]:
        """The bot's plan comments on the PR."""
        return [c for c in self.view["comments"] if c["body"].startswith(MARKER)]

    @property
    def plan_runs(self) -> list[dict[str, Any]]:
        """`hubbot/plan` check runs on the head SHA, oldest first."""
        runs = [
            r
            for r in self.view["check_runs"]
            if r["name"] == "hubbot/plan" and r["head_sha"] == self.head_sha
        ]
        return sorted(runs, key=lambda r: int(r["id"]))


Scenario = Callable[[Stack], Awaitable[int]]  # makes the bot work; returns the PR number
Hook = Callable[[Stack], Awaitable[None]]


def copy_template(template: Path, where: Path) -> Path:
    """A copy of the template repository, in a folder of the same name (the same repo name).

    Files are hard links: the double writes with git plumbing, which only adds objects and
    replaces refs by renaming, so the template is never written through a link.
    """
    where.mkdir(parents=True)
    return Path(
        shutil.copytree(template, where / template.name, symlinks=True, copy_function=os.link)
    )


@functools.cache
def app_key() -> str:
    """One RSA key for every double of the session (generating one costs ~0.1 s)."""
    from bot.sandbox.github.auth import generate_private_key

    return generate_private_key()


async def run_scenario(
    template: Path,
    where: Path,
    scenario: Scenario,
    *,
    checker: Any = None,
    policy: RetryPolicy = POLICY,
    before: Hook | None = None,
    prelude: Hook | None = None,
    server: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run `scenario` on a fresh double and bot over a copy of `template`; what it left.

    `prelude` acts on the double before webhooks reach the bot (its events are not
    delivered: an open PR without its plan); `before` runs after the scenario's calls
    start counting (faults go in here); `server` overrides `ServerSettings` fields.
    """
    from bot.sandbox.github.app import GitHubSandbox

    repo = copy_template(template, where)
    recorder = RecordingChecker(checker)
    sandbox = GitHubSandbox(repo, webhook_secret=SECRET, checker=recorder, private_key=app_key())
    await sandbox.start()
    try:
        _, runner = await start_stack(repo, sandbox=sandbox, policy=policy, **(server or {}))
    except BaseException:
        await sandbox.close()
        raise
    watch = LoopWatch().install()
    try:
        async with aiohttp.ClientSession() as http:
            port = runner.addresses[0][1]
            stack = Stack(sandbox, f"http://127.0.0.1:{port}", runner.app, http, [])
            record_tokens(runner.app, stack.tokens)
            if prelude is not None:
                await prelude(stack)
            await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
            start = len(sandbox.requests)  # start-up recovery's calls are not the scenario's
            if before is not None:
                await before(stack)
            planned = await stack.control("GET", "/faults")
            number = await scenario(stack)
            await stack.settle()
            await _delayed_requests_done(stack)
            view = await stack.pull(number)
            deployments = await stack.control("GET", "/deployments")
            errors = handler_errors(runner.app[METRICS])
            faults = await stack.control("GET", "/faults")
    finally:
        await runner.cleanup()
        await sandbox.close()
        watch.uninstall()
    return RunResult(
        calls=calls_of(sandbox.requests[start:]),
        view=view,
        loop_errors=watch.describe(),
        violations=list(sandbox.violations),
        handler_errors=errors,
        tokens=stack.tokens,
        exchanges=recorder,
        faults_fired=sum(int(f["times"]) for f in planned) - sum(int(f["times"]) for f in faults),
        deployments=deployments,
        faults_left=[f for f in faults if int(f["times"]) > 0],
    )


async def _delayed_requests_done(stack: Stack) -> None:
    """Wait until every delayed fault has been answered (the double records it when done)."""
    delayed = [f for f in stack.sandbox.state.faults if f.delay_seconds > 0]
    if not delayed:
        return
    try:
        await wait_until(lambda: all(f.times == 0 for f in delayed), within=DELAY * 2)
    except AssertionError:
        return  # the call was not made this time: the judge says the fault never fired
    threshold = min(f.delay_seconds for f in delayed) * 1000

    def answered() -> bool:
        return sum(r.duration_ms >= threshold for r in stack.sandbox.requests) >= len(delayed)

    await wait_until(answered, within=DELAY * 5, what="the delayed request was answered")
    await stack.deployed()  # and every deploy report written after it (rollout scenarios)


async def gather_limited(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run `jobs` with at most `limit` at once; their results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))
