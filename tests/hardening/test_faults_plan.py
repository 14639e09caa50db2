"""Faults at every call of a PR plan: GitHub's 502s, timeouts, secondary rate limits, expired
tokens, one call at a time.

A clean run lists the calls the bot makes to plan a PR (`GET /_sandbox/requests`). Each
faulted run starts over on a copy of the same repository (same SHAs, same paths) and fails
exactly one of those calls. A fault within the bot's retries must end as the clean run did
(the same comment, once; the same conclusion). A fault past the retries must end with a
check concluded `failure` saying why (or no check at all when it was the check's own
creation that failed). No check run is ever left `in_progress`.
"""

from __future__ import annotations

import asyncio
import functools
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import Stack
from tests.hardening.harness import (
    KINDS,
    Call,
    FaultKind,
    RunResult,
    calls_of,
    gather_limited,
    run_scenario,
)
from tests.hardening.support import wait_until

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

PARALLEL_RUNS = 8  # faulted runs at once: each is mostly waiting on the loop


async def open_edit(stack: Stack) -> int:
    """The scenario: open the PR of branch `edit`; its number once the bot has planned it."""
    answer = await stack.control("POST", "/pulls", {"head": "edit", "base": "main"})
    await stack.settle()
    return int(answer["number"])


async def clean_run(template: Path, where: Path, checker: Any) -> RunResult:
    """The run without faults, checked, whose calls the faulted runs hit one by one."""
    clean = await run_scenario(template, where, open_edit, checker=checker)
    assert clean.violations == [] and clean.loop_errors == ""
    (comment,) = clean.plan_comments
    assert "uni-a" in comment["body"]
    (run,) = clean.plan_runs
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert any(c.method == "POST" and c.path.endswith("/check-runs") for c in clean.calls)
    assert all(not c.path.startswith("/_sandbox") for c in clean.calls)
    return clean


def ended_like(clean: RunResult, result: RunResult) -> list[str]:
    """How `result` differs from the clean run's comment and final check (empty: same)."""
    problems = []
    bodies = [c["body"] for c in result.plan_comments]
    if bodies != [clean.plan_comments[0]["body"]]:
        same = sum(b == clean.plan_comments[0]["body"] for b in bodies)
        problems.append(f"{len(bodies)} plan comment(s), {same} with the clean run's body")
    runs = result.plan_runs
    want = clean.plan_runs[0]
    if not runs:
        problems.append("no check run")
    else:
        got = [(r["status"], r["conclusion"], title(r)) for r in runs]
        if got[-1] != (want["status"], want["conclusion"], title(want)):
            problems.append(f"check runs {got}: {summary(runs[-1])[:200]!r}")
    return problems


def title(run: dict[str, Any]) -> str | None:
    """A check run's output title (None before it has an output)."""
    return (run["output"] or {}).get("title")


def summary(run: dict[str, Any]) -> str:
    """A check run's output summary ('' before it has an output)."""
    return str((run["output"] or {}).get("summary") or "")


def judge(kind: FaultKind, call: Call, clean: RunResult, result: RunResult) -> list[str]:
    """Why a faulted run is wrong (empty when it ended as it must)."""
    problems = []
    if result.loop_errors:
        problems.append(f"unhandled task exceptions: {result.loop_errors}")
    problems += [f"request the real API would reject: {v}" for v in result.violations]
    stuck = [r["status"] for r in result.plan_runs if r["status"] != "completed"]
    if stuck:
        problems.append(f"check run(s) left {stuck}")
    if not any(call.matches(c.method, c.path) for c in result.calls):
        problems.append("the faulted call was never made")
    if result.faults_fired == 0:
        problems.append("the fault never fired")
    different = ended_like(clean, result)
    if kind.recoverable:
        problems += different
        if result.handler_errors:
            problems.append(f"{result.handler_errors} job(s) failed")
        return problems
    if not different:
        return problems  # the fault hit a call the bot could do without
    runs = result.plan_runs
    explained = [
        r
        for r in runs
        if r["conclusion"] == "failure"
        and "hubbot stopped before finishing" in summary(r)
        and re.search(r"\bGitHub (answered|did not answer|gave)", summary(r))
    ]
    creating = call.method == "POST" and call.path.endswith(("/access_tokens", "/check-runs"))
    if runs and not explained:
        problems.append(f"no check run says why: {different}")
    if not runs and not creating:
        problems.append("no check run, although creating one did not fail")
    bodies = [c["body"] for c in result.plan_comments]
    if len(bodies) > 1 or any(b != clean.plan_comments[0]["body"] for b in bodies):
        problems.append(f"wrong plan comment(s): {different}")
    return problems


async def faulted_run(
    template: Path, where: Path, checker: Any, call: Call, kind: FaultKind
) -> RunResult:
    """One run with `kind` at `call` (`RunResult.faults_fired` says whether it hit)."""

    async def inject(stack: Stack) -> None:
        await stack.control("POST", "/faults", call.fault(kind))

    result = await run_scenario(template, where, open_edit, checker=checker, before=inject)
    return result


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
async def test_a_fault_at_every_call_of_a_pr_plan(
    kind: FaultKind, plan_template: Path, tmp_path: Path, openapi_checker: Any
) -> None:
    clean = await clean_run(plan_template, tmp_path / "clean", openapi_checker)
    jobs = [
        functools.partial(
            faulted_run, plan_template, tmp_path / f"at-{call.index}", openapi_checker, call, kind
        )
        for call in clean.calls
    ]
    results = await gather_limited(jobs, PARALLEL_RUNS)
    problems = [
        f"{kind.name} at {call.label}: {problem}"
        for call, result in zip(clean.calls, results, strict=True)
        for problem in judge(kind, call, clean, result)
    ]
    assert not problems, "\n".join(problems)


async def test_token_expiry_at_every_call_of_a_pr_plan(
    plan_template: Path, tmp_path: Path, openapi_checker: Any
) -> None:
    """Every installation token expires while call i is in flight: the bot gets a new one."""
    clean = await clean_run(plan_template, tmp_path / "clean", openapi_checker)
    hold = FaultKind("hold", delay=0.25)  # within the bot's timeout: a slow answer, no error

    async def run(call: Call) -> RunResult:
        expiring: list[asyncio.Task[Any]] = []

        async def inject(stack: Stack) -> None:
            await stack.control("POST", "/faults", call.fault(hold))
            (fault,) = stack.sandbox.state.faults

            async def expire_when_held() -> None:
                await wait_until(lambda: fault.times == 0, what="call held")
                await stack.control("POST", "/tokens/expire")

            expiring.append(asyncio.create_task(expire_when_held()))

        result = await run_scenario(
            plan_template,
            tmp_path / f"at-{call.index}",
            open_edit,
            checker=openapi_checker,
            before=inject,
        )
        await asyncio.gather(*expiring)
        return result

    results = await gather_limited([functools.partial(run, c) for c in clean.calls], 4)
    problems = []
    for call, result in zip(clean.calls, results, strict=True):
        found = judge(hold, call, clean, result)
        if len(result.tokens) < 2:  # one at start-up (or the plan's first call), one after
            found.append("no new token was fetched after the expiry")
        problems += [f"token expiry at {call.label}: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_calls_are_numbered_by_occurrence() -> None:
    class Request:
        def __init__(self, method: str, path: str) -> None:
            self.method, self.path = method, path

    requests = [Request("GET", "/r/7"), Request("PATCH", "/r/7"), Request("GET", "/r/8")]
    calls = calls_of(requests)
    assert [(c.index, c.occurrence) for c in calls] == [(0, 0), (1, 0), (2, 1)]
    fault = calls[2].fault(KINDS["502"])
    assert (fault["path"], fault["skip"], fault["status"]) == (r"^/r/\d+$", 1, 502)
    assert calls[2].matches("GET", "/r/1234") and not calls[2].matches("GET", "/r/x")
