"""Focused tests of what the rollout fault runs found (each fix, one unit at a time).

- a late copy of a timed-out write must not overwrite a newer write to the same resource;
- a Deployment whose create timed out is looked up once it would have landed, not made twice;
- a final Deployment status (or a check's conclusion) that GitHub fails is written again;
- a push whose deploy cannot even be planned says so in a failed `hubbot/deploy` check;
- an adopted staging deploy (after a restart) that fails blocks the prod requeued beside it.
"""

from __future__ import annotations

import asyncio
import http
import time
from typing import Any

import aiohttp
import gidgethub
import pytest
from aiohttp import web
from gidgethub import sansio

from bot.deploys.executor import DeployJob
from bot.deploys.reporter import GitHubReporter
from bot.deploys.rollout import StepOutcome
from bot.deploys.schedule import ADOPTED, Schedule, Step, Wave
from bot.github.client import AmbiguousWrite, GitHubClient, RetryPolicy
from bot.github.comments import CommentCache
from bot.github.deployments import create_deployment
from bot.github.snapshot import RepoRef
from bot.handlers.context import Services
from bot.handlers.router import router
from tests.conftest import Answers, FakeGH, sample

REPO = RepoRef("o", "r", "https://api.github.com/repos/o/r")
SHA = "a" * 40
BROKEN = gidgethub.GitHubBroken(http.HTTPStatus.BAD_GATEWAY)


class Sleeps:
    """The client's sleep, recorded instead of slept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize(
    ("method", "path", "first"),
    [
        ("PATCH", "/repos/o/r/issues/comments/1", "timeout"),  # a comment edit lands late
        ("PATCH", "/repos/o/r/check-runs/1", "502"),  # a check's progress after its end
        ("POST", "/repos/o/r/deployments/1/statuses", "timeout"),  # `in_progress` last
    ],
)
async def test_a_write_after_a_failed_write_to_the_same_resource_waits_until_it_settled(
    aiohttp_server: Any, method: str, path: str, first: str
) -> None:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        if len(seen) == 1 and first == "timeout":
            await asyncio.sleep(0.5)  # answered after the client gave up
        if len(seen) == 1 and first == "502":
            return web.json_response({"message": "bad gateway"}, status=502)
        return web.json_response({"id": 1}, status=201 if method == "POST" else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, timeout=0.1, late_write_seconds=5.0)
    async with aiohttp.ClientSession() as session:
        gh = GitHubClient(
            session, "t", base_url=str(server.make_url("")), policy=policy, sleep=sleeps
        )
        write = gh.post if method == "POST" else gh.patch
        try:
            await write(path, data={})
        except AmbiguousWrite:  # a POST is not repeated blindly: its caller decides
            assert method == "POST"
        waits_before = len(sleeps.waits)
        await gh.getitem(path)  # reads never wait
        await write(path + "0", data={})  # nor writes to another resource
        assert sleeps.waits[waits_before:] == []
        await write(path, data={})  # the same resource: after the earlier write settled
    (wait,) = sleeps.waits[waits_before:]
    assert 4.0 < wait <= 5.0


async def test_a_timed_out_deployment_create_is_looked_up_once_it_would_have_landed() -> None:
    environment = "c/h"
    lookup = sansio.format_url(
        f"{REPO.url}/deployments{{?sha,environment,per_page}}",
        {"sha": SHA, "environment": environment, "per_page": 100},
    )
    late = {
        "id": 9,
        "url": f"{REPO.url}/deployments/9",
        "environment": environment,
        "sha": SHA,
        "payload": {"hubbot": {"attempt": "att-1"}},
    }
    lost = AmbiguousWrite("POST", "/deployments", "timed out", settles_at=time.monotonic() + 0.05)
    gh = FakeGH(
        {
            ("POST", f"{REPO.url}/deployments"): lost,
            # Not there yet when the create failed; there once it would have landed.
            ("GET", lookup): Answers([], [late]),
        }
    )
    ref = await create_deployment(
        gh,
        REPO.url,
        sha=SHA,
        environment=environment,
        production=False,
        transient=False,
        payload={"attempt": "att-1"},
        description="d",
    )
    assert ref.id == 9
    assert gh.urls("POST") == [f"{REPO.url}/deployments"]  # never created a second time


def reporter_with(gh: FakeGH) -> GitHubReporter:
    """A reporter whose failed writes are tried again at once."""
    return GitHubReporter(gh, REPO, comments=CommentCache(), retry_delays=(0.0, 0.0, 0.0))


async def report_one_deploy(reporter: GitHubReporter) -> None:
    """One staging target queued, started and deployed, reported to the end."""
    step = Step("c", "h", "staging", sha=SHA, wave=1)
    wave = Wave(1, "c", "main", SHA, steps={step.key: step}, state={step.key: "queued"})
    origin = reporter.new_origin(
        kind="merge", sha=SHA, actor="a", pr=None, asked=frozenset({step.key})
    )
    reporter.expect(origin)
    await reporter.queued([wave])
    await reporter.started(step, DeployJob("j", "o/r", "c", "h", SHA, "true", 60.0))
    await reporter.finished(step, StepOutcome("success", "deployed"))
    await reporter.flush()


def github_for_one_deploy(statuses: Any, conclude: Any) -> FakeGH:
    run = {"id": 1, "url": f"{REPO.url}/check-runs/1"}
    deployment = {"id": 5, "url": f"{REPO.url}/deployments/5", "environment": "c/h", "sha": SHA}
    return FakeGH(
        {
            ("POST", f"{REPO.url}/check-runs"): run,
            ("PATCH", run["url"]): conclude,
            ("POST", f"{REPO.url}/deployments"): deployment,
            ("POST", f"{deployment['url']}/statuses"): statuses,
        }
    )


async def test_a_final_status_github_fails_is_written_again() -> None:
    gh = github_for_one_deploy(Answers({}, {}, BROKEN, BROKEN, {}), {})
    await report_one_deploy(reporter_with(gh))
    states = [data["state"] for method, url, data in gh.calls if url.endswith("/statuses")]
    assert states == ["queued", "in_progress", "success", "success", "success"]


async def test_a_check_conclusion_github_fails_is_written_again() -> None:
    gh = github_for_one_deploy({}, Answers(BROKEN, BROKEN, {}))
    await report_one_deploy(reporter_with(gh))
    patches = [data for method, url, data in gh.calls if method == "PATCH"]
    assert [p.get("conclusion") for p in patches] == ["success", "success", "success"]


def push_to_default_branch() -> sansio.Event:
    data = sample("push", "push")  # GitHub's example deletes a tag: make it a branch update
    data.update(deleted=False, created=False, before="b" * 40, after=SHA)
    data["ref"] = f"refs/heads/{data['repository']['default_branch']}"
    data.setdefault("installation", {"id": 1})
    return sansio.Event(data, event="push", delivery_id="d-1")


async def test_a_push_whose_deploy_cannot_be_planned_says_so_in_a_failed_check() -> None:
    event = push_to_default_branch()
    url = event.data["repository"]["url"]
    run = {"id": 3, "url": f"{url}/check-runs/3"}
    gh = FakeGH(
        {
            ("GET", f"{url}/commits/{SHA}/pulls"): BROKEN,  # GitHub fails finding the merged PR
            ("POST", f"{url}/check-runs"): run,
            ("PATCH", run["url"]): {},
        }
    )
    with pytest.raises(gidgethub.GitHubBroken):  # the job still fails (logged, counted)
        await router.dispatch(event, gh, services=Services())
    ((_, _, created),) = [c for c in gh.calls if c[0] == "POST"]
    assert created["name"] == "hubbot/deploy" and created["head_sha"] == SHA
    ((_, _, ended),) = [c for c in gh.calls if c[0] == "PATCH"]
    assert ended["conclusion"] == "failure"
    assert "could not plan the deploy" in ended["output"]["title"]
    assert "GitHub answered 502" in ended["output"]["summary"]
    assert f"@{SHA}" in ended["output"]["summary"]  # how to deploy it anyway


@pytest.mark.parametrize("adopted", [True, False])
def test_an_adopted_staging_that_fails_blocks_the_requeued_prod_of_its_sha(adopted: bool) -> None:
    """After a restart, recovery adopts staging's running Job (its own wave) and requeues prod
    as another wave at the same SHA: staging failing must block that prod, as it would have
    blocked it in the one wave before the restart. Waves of other origins are left alone."""
    schedule = Schedule(max_parallel=4, max_parallel_per_cluster=2)
    staging = Step("c", "staging", "staging")
    stream = f"{ADOPTED}job-1" if adopted else "pr#3"
    schedule.add([staging], sha=SHA, stream=stream)
    (requeued,) = schedule.add([Step("c", "prod", "prod")], sha=SHA)
    (other,) = schedule.add([Step("c", "prod", "prod")], sha="b" * 40, stream="pr#4")
    (ready,) = schedule.ready()
    schedule.start(ready)
    blocked = schedule.finish(ready, ok=False)
    assert [(s.key, s.wave) for s, _ in blocked] == ([("c/prod", requeued.id)] if adopted else [])
    assert requeued.state["c/prod"] == ("blocked" if adopted else "queued")
    assert other.state["c/prod"] == "queued"
