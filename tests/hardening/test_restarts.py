"""Bot restarts during a rollout, beyond `tests/test_deploy_restart.py` (which covers the local
executor at each stage and one Kubernetes adoption of a lone deploy).

- Kubernetes executor, a restart at each stage of City College's three-stage rollout: the
  running stage's Job is adopted (the same Job: never created again), the later stages are
  requeued on their Deployments, the earlier ones are not touched, and everything ends
  reported (no Deployment left unfinished, the new bot's check a success).
- A restart while every Deployment is still only `queued` on GitHub (the bot stopped
  before its first deploy started): all of them are requeued on the same Deployments and
  deployed once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.deploys.repo import RepoDeploys
from bot.web.keys import SERVICES
from tests.deploy_support import (
    by_environment,
    deploy_runs,
    deploy_stack,
    deployments,
    eventually,
    example_repo,
    hubbot_yaml,
    merge_change,
    needs_tools,
    states,
    tools_path,
)
from tests.e2e_support import Stack
from tests.hardening.conftest import ROLLOUT_ENVIRONMENTS, rollout_change
from tests.hardening.rollouts import quick_reports, unfinished
from tests.hardening.test_faults_kube import JOBS, STAGES, jobs_by_environment, kube_config
from tests.test_deploy_restart import start_bot

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

DONE = ["queued", "in_progress", "success"]
REQUEUED = ["queued", "queued", "in_progress", "success"]


async def first_bot(
    repo: Path, checker: Any, http: aiohttp.ClientSession, **server: Any
) -> tuple[Stack, Any]:
    """The double and a first bot on it, webhooks pointed at the bot."""
    sandbox, runner = await deploy_stack(repo, checker=checker, **server)
    stack = Stack(sandbox, f"http://127.0.0.1:{runner.addresses[0][1]}", runner.app, http, [])
    await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
    quick_reports(stack)
    return stack, runner


async def ended(stack: Stack, sha: str, number: int) -> tuple[dict[str, Any], list[str]]:
    """The merge's Deployments by environment, and what was left unfinished on GitHub."""
    await stack.deployed()
    found = by_environment(await deployments(stack), sha)
    return found, unfinished(found.values(), await stack.pull(number))


@pytest.mark.parametrize("stage", STAGES)
async def test_a_restart_at_each_stage_of_a_kubernetes_rollout_adopts_and_reports(
    tmp_path: Path, openapi_checker: Any, stage: str
) -> None:
    from bot.sandbox.kube import KubeSandbox

    gates = tmp_path / "gates"
    gates.mkdir()
    index = STAGES.index(stage)
    for earlier in STAGES[:index]:  # the stages before this one may finish
        (gates / f"go-city-college-{earlier}").touch()
    repo = example_repo(tmp_path, hubbot_yaml=kube_config(gates))
    env = f"city-college/{stage}"
    async with KubeSandbox() as kube, aiohttp.ClientSession() as http:
        server = {"kube_host": kube.url, "kube_token": kube.token}
        stack, first = await first_bot(repo, openapi_checker, http, **server)
        sandbox = stack.sandbox
        try:
            number, sha = await merge_change(stack, rollout_change(), branch="change", wait=False)
            await kube.wait_for(lambda: env in jobs_by_environment(kube), 30)

            async def stage_running() -> bool:
                found = by_environment(await deployments(stack), sha).get(env)
                return found is not None and "in_progress" in states(found)

            await eventually(stage_running)
            await stack.settle()
            await first.cleanup()  # the bot stops; the stage's Job runs on in the cluster
            jobs = {job["metadata"]["name"]: job["metadata"]["uid"] for job in kube.jobs("hubbot")}
            before = by_environment(await deployments(stack), sha)
            assert set(before) == set(ROLLOUT_ENVIRONMENTS)

            stack, second = await start_bot(sandbox, repo, http, **server)
            try:
                recovery = stack.app[SERVICES].deploys.recovery
                assert (recovery["adopted"], recovery["requeued"]) == (1, len(STAGES) - index - 1)
                (gates / "go").touch()
                after, left = await ended(stack, sha, number)
                runs = deploy_runs(await stack.pull(number), sha)
            finally:
                await second.cleanup()
            after_jobs = jobs_by_environment(kube)
            uids = {job["metadata"]["name"]: job["metadata"]["uid"] for job in kube.jobs("hubbot")}
            creates = kube.faults.count("POST", JOBS)
        finally:
            await sandbox.close()
    assert left == []
    assert {e: d["id"] for e, d in after.items()} == {e: d["id"] for e, d in before.items()}
    assert {e: len(names) for e, names in after_jobs.items()} == dict.fromkeys(
        ROLLOUT_ENVIRONMENTS, 1
    )
    assert creates == len(STAGES)  # one create per target: the adopted Job was not made again
    assert {n: u for n, u in uids.items() if n in jobs} == jobs  # the same Jobs, same uids
    for i, earlier_or_later in enumerate(STAGES):
        got = states(after[f"city-college/{earlier_or_later}"])
        if i < index:
            assert got == DONE, earlier_or_later
        elif i == index:  # adopted: resumed on the same Deployment
            assert got == ["queued", "in_progress", "in_progress", "success"], got
        else:
            assert got == REQUEUED, earlier_or_later
    assert [r["conclusion"] for r in runs][:1] == ["cancelled"]  # the stopped bot's
    assert {r["conclusion"] for r in runs[1:]} == {"success"}
    assert sandbox.violations == [], "\n".join(sandbox.violations)


def failing_staging(gates: Path) -> str:
    """`kube_config`, where a hub's deploy fails once `fail-<cluster>-<hub>` exists."""
    text = kube_config(gates)
    old = "done; echo deploying {cluster}/{hub}"
    assert old in text
    return text.replace(
        old,
        f"done; [ ! -e {gates}/fail-{{cluster}}-{{hub}} ] && echo deploying {{cluster}}/{{hub}}",
    )


async def test_an_adopted_staging_deploy_that_fails_still_blocks_prod(
    tmp_path: Path, openapi_checker: Any
) -> None:
    """The bot restarts while staging's Job runs; prod is requeued, staging adopted. Staging
    then fails: prod must end blocked, as it would have without the restart."""
    from bot.sandbox.kube import KubeSandbox

    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "go-city-college-support").touch()
    repo = example_repo(tmp_path, hubbot_yaml=failing_staging(gates))
    async with KubeSandbox() as kube, aiohttp.ClientSession() as http:
        server = {"kube_host": kube.url, "kube_token": kube.token}
        stack, first = await first_bot(repo, openapi_checker, http, **server)
        sandbox = stack.sandbox
        try:
            number, sha = await merge_change(stack, rollout_change(), branch="change", wait=False)

            async def staging_running() -> bool:
                found = by_environment(await deployments(stack), sha).get("city-college/staging")
                return found is not None and "in_progress" in states(found)

            await eventually(staging_running)
            await kube.wait_for(lambda: "city-college/staging" in jobs_by_environment(kube), 30)
            await stack.settle()
            await first.cleanup()
            stack, second = await start_bot(sandbox, repo, http, **server)
            try:
                recovery = stack.app[SERVICES].deploys.recovery
                assert (recovery["adopted"], recovery["requeued"]) == (1, 1)
                (gates / "fail-city-college-staging").touch()
                (gates / "go").touch()
                after, left = await ended(stack, sha, number)
            finally:
                await second.cleanup()
            jobs = jobs_by_environment(kube)
        finally:
            await sandbox.close()
    assert left == []
    assert states(after["city-college/staging"])[-1] == "failure"
    prod = after["city-college/prod"]
    assert "city-college/prod" not in jobs, "prod was deployed after its staging failed"
    assert states(prod)[-1] in ("error", "failure", "inactive"), states(prod)
    assert "staging failed" in prod["statuses"][-1]["description"]


@dataclass
class Hold:
    """Deploys wait before they start (before `in_progress`) until `go` is set."""

    go: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # a deploy is waiting


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Hold:
    """Every deploy of this test waits in `RepoDeploys.prepare` until the hold's `go`."""
    hold = Hold()
    prepare: Callable[[RepoDeploys, Any], Awaitable[Any]] = RepoDeploys.prepare

    async def waiting(self: RepoDeploys, step: Any) -> Any:
        hold.entered.set()
        await hold.go.wait()
        return await prepare(self, step)

    monkeypatch.setattr(RepoDeploys, "prepare", waiting)
    return hold


async def test_a_restart_while_deploys_are_only_queued_requeues_each_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    openapi_checker: Any,
    held: Hold,
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    repo = example_repo(tmp_path, hubbot_yaml=hubbot_yaml())
    async with aiohttp.ClientSession() as http:
        stack, first = await first_bot(repo, openapi_checker, http)
        sandbox = stack.sandbox
        try:
            number, sha = await merge_change(stack, rollout_change(), branch="change", wait=False)

            async def all_queued() -> bool:
                found = by_environment(await deployments(stack), sha)
                return len(found) == len(ROLLOUT_ENVIRONMENTS) and all(
                    states(d) == ["queued"] for d in found.values()
                )

            await eventually(all_queued)
            await asyncio.wait_for(held.entered.wait(), 30)
            await stack.settle()
            await first.cleanup()  # stopped before any deploy started
            before = by_environment(await deployments(stack), sha)
            assert all(states(d) == ["queued"] for d in before.values())

            held.go.set()
            stack, second = await start_bot(sandbox, repo, http)
            try:
                assert stack.app[SERVICES].deploys.recovery["requeued"] == len(before)
                after, left = await ended(stack, sha, number)
                runs = deploy_runs(await stack.pull(number), sha)
            finally:
                await second.cleanup()
        finally:
            await sandbox.close()
    assert left == []
    assert {e: d["id"] for e, d in after.items()} == {e: d["id"] for e, d in before.items()}
    assert {e: states(d) for e, d in after.items()} == dict.fromkeys(ROLLOUT_ENVIRONMENTS, REQUEUED)
    assert [r["conclusion"] for r in runs] == ["cancelled", "success"]
    assert sandbox.violations == [], "\n".join(sandbox.violations)
