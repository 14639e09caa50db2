"""Faults at every call of a rollout: a merge that deploys support, staging and prod with the
local executor and real helm, with GitHub failing one call at a time.

A clean run lists the bot's calls from the merge on (the PR, opened before the bot listens,
is not planned: part 1 faults the plan). Each faulted run starts over on a copy of the same
repository and fails one call, or one call on every path at once. Every run must end with
every Deployment in a final state and no `hubbot/deploy` check left open. A fault within the
bot's retries must end as the clean run did (one Deployment per target, queued →
in_progress → success, the check a success, the comment "all 3 done"); a fault past them
may end otherwise, but must say so where a person looks.

The runs are many and mostly wait (on helm, on delayed answers), so one module-scoped
campaign runs them all at once, a few at a time, and each test judges its share.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.deploy_support import (
    HELM,
    PUBLIC_URL,
    by_environment,
    deployments,
    eventually,
    gate_each,
    hubbot_yaml,
    merge_change,
    needs_tools,
    running,
    states,
    tools_path,
)
from tests.e2e_support import Stack
from tests.hardening.conftest import ROLLOUT_ENVIRONMENTS, commit_dates_fixed, rollout_change
from tests.hardening.harness import KINDS, Call, FaultKind, RunResult, gather_limited, run_scenario
from tests.hardening.rollouts import ended_clean, quick_reports, said, unfinished
from tests.hardening.support import SampledChecker

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

PARALLEL_RUNS = 6  # runs at once: they share one loop and render with helm, but mostly wait
SERVER = {"public_url": PUBLIC_URL}


async def open_change(stack: Stack) -> None:
    """The prelude: the PR of branch `change`, opened before the bot listens."""
    await stack.control("POST", "/pulls", {"head": "change", "base": "main"})


async def merge(stack: Stack) -> int:
    """The scenario: merge PR #1; its number once every deploy ended and was reported."""
    await stack.control("POST", "/pulls/1/merge", {"user": "octocat"})
    await stack.deployed()
    return 1


async def rollout_run(template: Path, where: Path, checker: Any, *faults: dict[str, Any]) -> Any:
    """One merge run, with `faults` (bodies for `POST /_sandbox/faults`) armed at its start."""

    async def before(stack: Stack) -> None:
        quick_reports(stack)
        for fault in faults:
            await stack.control("POST", "/faults", fault)

    return await run_scenario(
        template, where, merge, checker=checker, before=before, prelude=open_change, server=SERVER
    )


def distinct(calls: list[Call]) -> list[Call]:
    """The first and the last call of each path (as a pattern: any id), in order.

    The calls between them on one path are the same code at another target (the nine
    statuses of three Deployments; each edit of the comment): the first and the last
    cover a write that later ones repair and one that nothing after repairs. This keeps
    the suite bounded in time.
    """
    groups = by_path(calls)
    chosen = {c.index for group in groups.values() for c in (group[0], group[-1])}
    return [c for c in calls if c.index in chosen]


def by_path(calls: list[Call]) -> dict[tuple[str, str], list[Call]]:
    """Calls grouped by method and path pattern, in order."""
    groups: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
        groups.setdefault((call.method, call.pattern), []).append(call)
    return groups


def writes(calls: list[Call]) -> list[Call]:
    """The calls that change something on GitHub (a timed-out read is only read again)."""
    return [c for c in calls if c.method != "GET"]


# One call at a time: a write that times out lands late, after the bot gave up on it; a
# call failed past every retry leaves the bot to cope without it.
PER_CALL: dict[str, Callable[[list[Call]], list[Call]]] = {
    "timeout": lambda calls: writes(distinct(calls)),
    "502-every-attempt": distinct,
}
# Every path at once (its first or its last call), faults the bot retries: GitHub is flaky
# everywhere in one run, and the run must still end as the clean one did.
AT_ONCE = [
    ("502", "first"),
    ("502", "last"),  # a 502 leaves a write ambiguous: nothing repairs the last ones
    ("403-secondary-limit", "first"),
    ("429-secondary-limit", "last"),  # a rate limit is the same wait for any call
    ("timeout", "first-read"),  # a read that times out is read again
]


def at_once(calls: list[Call], which: str) -> list[Call]:
    """The first (or last) call of every path, or the first read of every read path."""
    groups = by_path([c for c in calls if which != "first-read" or c.method == "GET"])
    return [group[-1 if which == "last" else 0] for group in groups.values()]


@dataclass
class Campaign:
    """The clean run and every faulted run, by kind: (calls faulted, result) pairs."""

    clean: RunResult
    per_call: dict[str, list[tuple[Call, RunResult]]] = field(default_factory=dict)
    at_once: dict[tuple[str, str], tuple[list[Call], RunResult]] = field(default_factory=dict)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def campaign(
    rollout_template: Path, tmp_path_factory: pytest.TempPathFactory, openapi_checker: Any
) -> AsyncIterator[Campaign]:
    """Every run of this module, a few at a time (helm on PATH, the double's dates fixed)."""
    needs_tools()
    checker = SampledChecker(openapi_checker)
    where = tmp_path_factory.mktemp("rollout-faults")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PATH", f"{HELM.parent}{os.pathsep}{os.environ.get('PATH', '')}")
        commit_dates_fixed(monkeypatch)
        clean = await rollout_run(rollout_template, where / "clean", checker)
        jobs: list[Callable[[], Any]] = []
        plan: list[tuple[str, Any]] = []
        for name, select in PER_CALL.items():
            for call in select(clean.calls):
                where_to = where / f"{name}-{call.index}"
                fault = call.fault(KINDS[name])
                jobs.append(
                    functools.partial(rollout_run, rollout_template, where_to, checker, fault)
                )
                plan.append((name, call))
        for name, which in AT_ONCE:
            calls = at_once(clean.calls, which)
            faults = [c.fault(KINDS[name]) for c in calls]
            where_to = where / f"{name}-{which}"
            jobs.append(
                functools.partial(rollout_run, rollout_template, where_to, checker, *faults)
            )
            plan.append(((name, which), calls))
        results = await gather_limited(jobs, PARALLEL_RUNS)
    done = Campaign(clean)
    for (key, calls), result in zip(plan, results, strict=True):
        if isinstance(key, str):
            done.per_call.setdefault(key, []).append((calls, result))
        else:
            done.at_once[key] = (calls, result)
    yield done


def fewer_calls(call: Call, result: RunResult) -> bool:
    """Whether this run made fewer calls on the faulted path than the clean run's `call` needs.

    The comment's edits are throttled by time, so their number varies from run to run:
    the clean run's last edit may not exist in another (the fault then never fires).
    """
    return sum(call.matches(c.method, c.path) for c in result.calls) <= call.occurrence


def judge(kind: FaultKind, call: Call, result: RunResult) -> list[str]:
    """Why a faulted run is wrong (empty when it ended as it must)."""
    problems = []
    if result.loop_errors:
        problems.append(f"unhandled task exceptions: {result.loop_errors}")
    problems += [f"request the real API would reject: {v}" for v in result.violations]
    if result.faults_fired == 0 and not fewer_calls(call, result):
        problems.append("the fault never fired")
    problems += unfinished(result.deployments, result.view)
    different = ended_clean(result.deployments, result.view, ROLLOUT_ENVIRONMENTS)
    if kind.recoverable:
        problems += different
        if result.handler_errors:
            problems.append(f"{result.handler_errors} job(s) failed")
    elif different and not said(result.deployments, result.view):
        problems.append(f"ended otherwise, and nothing says so: {different}")
    return problems


def test_the_clean_rollout_deploys_three_stages_and_says_so(campaign: Campaign) -> None:
    clean = campaign.clean
    assert clean.violations == [] and clean.loop_errors == "" and clean.handler_errors == 0
    assert ended_clean(clean.deployments, clean.view, ROLLOUT_ENVIRONMENTS) == []
    assert unfinished(clean.deployments, clean.view) == []
    paths = {(c.method, c.path.split("/")[-1]) for c in clean.calls}
    assert {("POST", "deployments"), ("POST", "statuses"), ("POST", "check-runs")} <= paths


@pytest.mark.parametrize("name", list(PER_CALL))
def test_a_fault_at_every_call_of_a_rollout(name: str, campaign: Campaign) -> None:
    kind = KINDS[name]
    runs = campaign.per_call[name]
    assert len(runs) >= 8, "too few calls faulted: the scenario changed"
    problems = [
        f"{kind.name} at {call.label}: {problem}"
        for call, result in runs
        for problem in judge(kind, call, result)
    ]
    missed = [call.label for call, result in runs if result.faults_fired == 0]
    if len(missed) > max(1, len(runs) // 6):  # a few timing-dependent comment edits at most
        problems.append(f"faults that never fired: {missed}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("name", "which"), AT_ONCE)
def test_recoverable_faults_on_every_path_of_a_rollout_at_once(
    name: str, which: str, campaign: Campaign
) -> None:
    kind = KINDS[name]
    calls, result = campaign.at_once[(name, which)]
    problems = [p for p in judge(kind, calls[0], result) if "never fired" not in p]
    # A fault that never fired is fine only where this run made fewer calls on its path than
    # the clean run did (fewer comment edits; no `in_progress` edit of a check created late).
    left = {(f["method"], f["path"]) for f in result.faults_left}
    missed = [
        c.label for c in calls if (c.method, c.pattern) in left and not fewer_calls(c, result)
    ]
    if missed:
        problems.append(f"faults that never fired although their call was made: {missed}")
    assert not problems, "\n".join(problems)


async def test_tokens_expiring_while_each_stage_deploys_end_in_a_reported_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    """Every installation token expires while support, then staging, then prod deploys:
    each time the bot gets a new one, and the rollout ends reported as a clean one."""
    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(
        before_command=gate_each(gates), before_support=gate_each(gates, "support")
    )
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        quick_reports(stack)
        number, sha = await merge_change(stack, rollout_change(), branch="change", wait=False)
        for env in ROLLOUT_ENVIRONMENTS:

            async def deploying(env: str = env) -> bool:
                found = by_environment(await deployments(stack), sha).get(env)
                return found is not None and "in_progress" in states(found)

            await eventually(deploying)
            fetched = len(stack.tokens)
            expired = await stack.control("POST", "/tokens/expire")
            assert expired["expired"] >= 1
            (gates / f"go-{env.replace('/', '-')}").touch()
            await eventually(lambda fetched=fetched: _more(stack.tokens, fetched))
        await stack.deployed()
        found = await deployments(stack)
        view = await stack.pull(number)
    assert unfinished(found, view) == []
    assert ended_clean(found, view, ROLLOUT_ENVIRONMENTS) == []
    assert len(stack.tokens) >= 1 + len(ROLLOUT_ENVIRONMENTS)  # a new one after each expiry


async def _more(tokens: list[str], than: int) -> bool:
    return len(tokens) > than
