"""Staging previews, claims, cancel and close, through the DeployService and the real bot.

The slash commands (another module) decide who may ask; here the service is called as
they call it, and everything is read back from the double: a preview is a transient
Deployment naming its PR, so it claims the hub; a merge that redeploys the hub clears the
claim; closing the PR releases it (`inactive`) and cancels its queued previews; `/cancel`
stops queued and running ones, each saying who cancelled it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import (
    COMMON,
    by_environment,
    client,
    deploy_comments,
    deployments,
    edited,
    eventually,
    gate,
    hubbot_yaml,
    merge_change,
    needs_tools,
    open_pr,
    repo_ref,
    running,
    service,
    states,
    tools_path,
)
from tests.e2e_support import Stack

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

STAGING = "config/clusters/uni-a/staging.values.yaml"
OCEAN = "config/clusters/ocean-lab/staging.values.yaml"


@pytest.fixture
async def gated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> AsyncIterator[tuple[Stack, Path]]:
    """A bot whose deploys wait at a gate (`<folder>/go`) the test opens."""
    needs_tools()
    tools_path(monkeypatch)
    folder = tmp_path / "gates"
    folder.mkdir()
    config = hubbot_yaml(before_command=gate(folder))
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        yield stack, folder


async def preview(stack: Stack, number: int, head: str, *targets: tuple[str, str]) -> None:
    repo = await repo_ref(stack)
    await service(stack).deploy_preview(
        client(stack),
        repo,
        pr=number,
        pr_author="octocat",
        head_sha=head,
        targets=list(targets),
        actor="alice-partner",
        comments_url=f"{repo.url}/issues/{number}/comments",
    )


async def claims(stack: Stack) -> dict[str, int]:
    found = await service(stack).claims(client(stack), await repo_ref(stack), fresh=True)
    return {env: claim.pr for env, claim in found.items()}


async def test_a_preview_claims_its_hub_and_a_merge_clears_the_claim(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    (gates / "go").touch()
    number, head = await open_pr(stack, {STAGING: edited(STAGING, "preview")}, branch="p1")
    await preview(stack, number, head, ("uni-a", "staging"))
    await stack.deployed()
    (d,) = [d for d in await deployments(stack) if d["sha"] == head]
    assert d["environment"] == "uni-a/staging" and d["transient_environment"] is True
    assert d["production_environment"] is False
    assert d["payload"]["hubbot"]["pr"] == number
    assert d["payload"]["hubbot"]["pr_author"] == "octocat"
    assert states(d) == ["queued", "in_progress", "success"]
    assert await claims(stack) == {"uni-a/staging": number}
    (body,) = deploy_comments(await stack.pull(number))
    assert "Staging preview" in body and "@alice-partner" in body

    # Another PR's merge redeploys uni-a's hubs: main wins, the claim is gone.
    await merge_change(stack, {COMMON: edited(COMMON, "main wins")}, branch="m1")
    assert await claims(stack) == {}
    assert service(stack).snapshot()["claims"] == []


async def test_closing_a_pr_releases_its_claims_and_cancels_its_queued_previews(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    one, head_one = await open_pr(stack, {OCEAN: edited(OCEAN, "close")}, branch="c1")
    # ocean-lab's lane is held by a running preview of this PR; the second one queues.
    await preview(stack, one, head_one, ("ocean-lab", "staging"))

    async def started() -> bool:
        d = by_environment(await deployments(stack), head_one).get("ocean-lab/staging")
        return d is not None and "in_progress" in states(d)

    await eventually(started)
    two, _ = await open_pr(stack, {STAGING: edited(STAGING, "close-2")}, branch="c2")
    await preview(stack, one, head_one, ("uni-a", "staging"))  # uni-a: starts too
    await eventually(lambda: _in_progress(stack, head_one, "uni-a/staging"))
    await preview(stack, one, head_one, ("uni-a", "r-staging"))  # same stream, lane busy
    await stack.settle()
    assert set(await claims(stack)) == {"ocean-lab/staging", "uni-a/staging", "uni-a/r-staging"}
    assert service(stack).started_by(await repo_ref(stack), one) == {"alice-partner"}

    await stack.control("PATCH", f"/pulls/{one}", {"state": "closed", "user": "octocat"})
    await stack.settle()
    assert await claims(stack) == {}
    (gates / "go").touch()
    await stack.deployed()
    found = by_environment(await deployments(stack), head_one)
    # The running previews end, then are released; the queued one was cancelled.
    assert states(found["ocean-lab/staging"])[-2:] == ["success", "inactive"]
    assert states(found["uni-a/staging"])[-2:] == ["success", "inactive"]
    r_staging = found["uni-a/r-staging"]["statuses"]
    assert [s["state"] for s in r_staging][-1] == "inactive"
    assert any(s["description"] == "cancelled by @octocat" for s in r_staging)
    assert await claims(stack) == {}
    assert two  # the other PR was untouched
    assert service(stack).started_by(await repo_ref(stack), one) == set()


async def _in_progress(stack: Stack, sha: str, env: str) -> bool:
    d = by_environment(await deployments(stack), sha).get(env)
    return d is not None and "in_progress" in states(d)


async def test_cancel_stops_running_and_queued_previews_saying_who(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    number, head = await open_pr(stack, {STAGING: edited(STAGING, "cancel")}, branch="x1")
    await preview(stack, number, head, ("uni-a", "staging"), ("uni-a", "r-staging"))
    await eventually(lambda: _in_progress(stack, head, "uni-a/staging"))
    repo = await repo_ref(stack)
    steps = await service(stack).cancel_pr(repo, number, actor="maintainer-mo")
    assert {s.key for s in steps} == {"uni-a/staging", "uni-a/r-staging"}
    await stack.deployed()
    found = by_environment(await deployments(stack), head)
    for env in ("uni-a/staging", "uni-a/r-staging"):
        last = found[env]["statuses"][-1]
        assert (last["state"], last["description"]) == ("error", "cancelled by @maintainer-mo")
    (body,) = deploy_comments(await stack.pull(number))
    assert body.count("🚫 cancelled") == 2
    assert not (gates / "go").exists()  # nothing deployed: the running one was killed


async def test_a_preview_whose_pr_moved_says_it_is_behind(gated: tuple[Stack, Path]) -> None:
    stack, gates = gated
    number, head = await open_pr(stack, {STAGING: edited(STAGING, "behind")}, branch="b1")
    await preview(stack, number, head, ("uni-a", "staging"))
    await eventually(lambda: _in_progress(stack, head, "uni-a/staging"))
    files = {STAGING: edited(STAGING, "behind", 5)}
    await stack.control("POST", f"/pulls/{number}/commits", {"files": files})
    (gates / "go").touch()
    await stack.deployed()
    (body,) = deploy_comments(await stack.pull(number))
    assert "this preview is behind" in body
