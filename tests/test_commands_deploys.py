"""Slash commands that deploy, end to end: previews, redeploys, claims, `/unlock`, `/cancel`.

`hubbot serve` and the GitHub double over a fresh copy of config/, with the real
DeployService and local executor running the example's `deploy.py` (real `helm template`).
Deploys wait at a gate the test opens when it wants them to run, so "running" and
"queued" are states the test holds, never a race it hopes to win. Everything is read back
from the double: replies, reactions, Deployments and their statuses.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import (
    COMMON,
    by_environment,
    deployments,
    edited,
    eventually,
    gate,
    hubbot_yaml,
    merge_change,
    needs_tools,
    running,
    states,
    tools_path,
)
from tests.e2e_support import Stack
from tests.test_commands_e2e import add_user, comment, open_pr_as, reactions, reply

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

STAGING = "config/clusters/uni-a/staging.values.yaml"
ROLES = ["admin", "maintain", "write", "triage", "read", "none"]
WRITERS = {"admin", "maintain", "write"}


@pytest.fixture
async def gated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> AsyncIterator[tuple[Stack, Path]]:
    """A deploying bot whose deploys wait at a gate (`<folder>/go`) the test opens."""
    needs_tools()
    tools_path(monkeypatch)
    folder = tmp_path / "gates"
    folder.mkdir()
    config = hubbot_yaml(before_command=gate(folder))
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        await add_user(stack, "alice-partner", "read")
        yield stack, folder


async def running_on(stack: Stack, sha: str, env: str) -> bool:
    d = by_environment(await deployments(stack), sha).get(env)
    return d is not None and "in_progress" in states(d)


async def open_gate(stack: Stack, gates: Path) -> None:
    (gates / "go").touch()
    await stack.deployed()


async def test_a_partner_previews_their_staging_hub_pinned_to_the_head_read(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    number = await open_pr_as(stack, "alice-partner", {STAGING: edited(STAGING, "mine")})
    head = (await stack.pull(number))["head"]["sha"]
    cid = await comment(stack, number, "alice-partner", "/deploy staging")
    body = reply(await stack.pull(number), cid)
    assert f"✅ **`/deploy staging`** queued `uni-a/staging` at `{head[:7]}`" in body
    await eventually(lambda: running_on(stack, head, "uni-a/staging"))
    # The PR moves while its preview runs: the preview stays on the SHA it was asked for.
    await stack.control(
        "POST", f"/pulls/{number}/commits", {"files": {STAGING: edited(STAGING, "moved", 7)}}
    )
    await open_gate(stack, gates)
    view = await stack.pull(number)
    assert reactions(view, cid) == ["eyes", "rocket"]
    (d,) = [d for d in await deployments(stack) if d["environment"] == "uni-a/staging"]
    assert d["sha"] == head != view["head"]["sha"]
    assert d["transient_environment"] is True and d["production_environment"] is False
    assert d["payload"]["hubbot"]["pr"] == number
    assert states(d) == ["queued", "in_progress", "success"]


async def test_a_team_partner_and_a_writer_on_a_fork_may_preview(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    await open_gate(stack, gates)
    team = {"org": "example-org", "slug": "uni-a-partners", "members": ["bob"]}
    await stack.control("POST", "/teams", team)
    await add_user(stack, "bob", "triage")
    number = await open_pr_as(stack, "bob", {STAGING: edited(STAGING, "team")}, branch="t")
    cid = await comment(stack, number, "bob", "/deploy uni-a/r-staging")
    assert "✅ **`/deploy uni-a/r-staging`** queued `uni-a/r-staging`" in reply(
        await stack.pull(number), cid
    )
    await stack.deployed()
    # A fork's PR: refused to the partner (another test), allowed to someone with write access.
    await add_user(stack, "forker", "none")
    fork = await open_pr_as(stack, "forker", {STAGING: edited(STAGING, "fork")}, fork=True)
    await add_user(stack, "wendy", "write")
    cid = await comment(stack, fork, "wendy", "/unlock uni-a/r-staging\n/deploy staging")
    body = reply(await stack.pull(fork), cid)
    assert "✅ **`/unlock uni-a/r-staging`** released `uni-a/r-staging`" in body
    assert "✅ **`/deploy staging`** queued `uni-a/staging`" in body
    await stack.deployed()
    envs = {(d["environment"], d["payload"]["hubbot"].get("pr")) for d in await deployments(stack)}
    assert {("uni-a/r-staging", number), ("uni-a/staging", fork)} <= envs


async def test_claims_refuse_another_pr_until_unlocked_and_a_merge_clears_them(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    await open_gate(stack, gates)
    first = await open_pr_as(stack, "alice-partner", {STAGING: edited(STAGING, "one")}, branch="a")
    cid = await comment(stack, first, "alice-partner", "/deploy staging")
    assert "queued `uni-a/staging`" in reply(await stack.pull(first), cid)
    await stack.deployed()

    second = await open_pr_as(stack, "octocat", {STAGING: edited(STAGING, "two", 2)}, branch="b")
    # The plan comment shows the claim on the hub this PR would preview (no @-mention).
    plan = plan_body(await stack.pull(second))
    assert "### Staging claims" in plan
    assert f"| `uni-a/staging` | #{first} (alice-partner) |" in plan
    assert "@alice-partner" not in plan
    cid = await comment(stack, first, "alice-partner", "/plan")
    assert "| `uni-a/staging` | this PR |" in plan_body(await stack.pull(first))
    cid = await comment(stack, second, "octocat", "/deploy staging")
    view = await stack.pull(second)
    body = reply(view, cid)
    link = re.search(rf"refused: `uni-a/staging` is claimed by #{first} \((\S+)\) ", body)
    assert link, body
    assert link[1].startswith("http") and link[1].endswith(
        f"/{stack.sandbox.state.full_name}/pull/{first}"
    )
    assert "(by @alice-partner)" in body
    assert reactions(view, cid) == ["eyes", "confused"]
    assert all(d["sha"] != view["head"]["sha"] for d in await deployments(stack))

    # Another PR's claim: only write access releases it from here; the holder's own PR is
    # released by its author, not by a stranger.
    await add_user(stack, "rita", "read")
    cid = await comment(stack, second, "rita", "/unlock uni-a/staging")
    assert "only someone with write access may release another PR's claim" in reply(
        await stack.pull(second), cid
    )
    cid = await comment(stack, first, "rita", "/unlock")
    assert "refused: only the author of the PR holding the claim" in reply(
        await stack.pull(first), cid
    )
    cid = await comment(stack, first, "alice-partner", "/unlock")
    assert "✅ **`/unlock`** released `uni-a/staging`" in reply(await stack.pull(first), cid)
    held = by_environment(await deployments(stack))["uni-a/staging"]
    assert states(held)[-1] == "inactive"

    cid = await comment(stack, second, "octocat", "/plan")
    assert "Staging claims" not in plan_body(await stack.pull(second))
    cid = await comment(stack, second, "octocat", "/deploy staging")
    assert "✅ **`/deploy staging`** queued `uni-a/staging`" in reply(await stack.pull(second), cid)
    await stack.deployed()
    cid = await comment(stack, first, "alice-partner", "/deploy staging")
    assert f"claimed by #{second}" in reply(await stack.pull(first), cid)

    # A merge that redeploys uni-a wins over every claim on it.
    await merge_change(stack, {COMMON: edited(COMMON, "main wins")}, branch="m")
    await comment(stack, second, "octocat", "/plan")
    assert "Staging claims" not in plan_body(await stack.pull(second))
    cid = await comment(stack, first, "alice-partner", "/deploy staging")
    assert "✅ **`/deploy staging`** queued `uni-a/staging`" in reply(await stack.pull(first), cid)
    await stack.deployed()


async def test_two_prs_asking_at_once_get_one_claim(gated: tuple[Stack, Path]) -> None:
    stack, gates = gated
    await open_gate(stack, gates)
    one = await open_pr_as(stack, "octocat", {STAGING: edited(STAGING, "x")}, branch="x")
    two = await open_pr_as(stack, "octocat", {STAGING: edited(STAGING, "y", 2)}, branch="y")
    # Both comments are acknowledged before either is handled; they run on two workers.
    posted = await asyncio.gather(
        *(
            stack.control(
                "POST", f"/pulls/{n}/comments", {"user": "octocat", "body": "/deploy staging"}
            )
            for n in (one, two)
        )
    )
    await stack.settle()
    bodies = [
        reply(await stack.pull(n), int(p["id"])) for n, p in zip((one, two), posted, strict=True)
    ]
    assert sorted("queued `uni-a/staging`" in b for b in bodies) == [False, True]
    assert sum("is claimed by #" in b for b in bodies) == 1
    await stack.deployed()


async def test_cancel_by_the_starter_and_not_by_a_stranger(gated: tuple[Stack, Path]) -> None:
    stack, gates = gated
    number = await open_pr_as(stack, "alice-partner", {STAGING: edited(STAGING, "cancel")})
    head = (await stack.pull(number))["head"]["sha"]
    cid = await comment(stack, number, "alice-partner", "/cancel")
    assert "nothing of #" in reply(await stack.pull(number), cid)  # nothing to cancel yet
    await comment(stack, number, "alice-partner", "/deploy staging")
    await eventually(lambda: running_on(stack, head, "uni-a/staging"))

    await add_user(stack, "stranger")
    cid = await comment(stack, number, "stranger", "/cancel")
    view = await stack.pull(number)
    assert "refused: only whoever started these deploys (@alice-partner)" in reply(view, cid)
    assert reactions(view, cid) == ["eyes", "confused"]

    cid = await comment(stack, number, "alice-partner", "/cancel")
    view = await stack.pull(number)
    assert "✅ **`/cancel`** cancelled `uni-a/staging`" in reply(view, cid)
    assert reactions(view, cid) == ["eyes", "rocket"]
    await stack.deployed()
    last = by_environment(await deployments(stack), head)["uni-a/staging"]["statuses"][-1]
    assert (last["state"], last["description"]) == ("error", "cancelled by @alice-partner")
    assert not (gates / "go").exists()  # it never got past the gate


async def test_a_writer_redeploys_a_commit_of_the_default_branch_to_prod(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    await open_gate(stack, gates)
    number = await open_pr_as(stack, "octocat", {STAGING: edited(STAGING, "r")})
    main = (await stack.pull(number))["base"]["sha"]
    cid = await comment(stack, number, "octocat", f"/deploy uni-a/prod@{main[:7]}")
    body = reply(await stack.pull(number), cid)
    assert (
        f"✅ **`/deploy uni-a/prod@{main[:7]}`** queued `uni-a/prod` at `{main[:7]}` of `main`"
        in (body)
    )
    await stack.deployed()
    (d,) = [d for d in await deployments(stack) if d["environment"] == "uni-a/prod"]
    assert d["sha"] == main  # the short SHA, resolved
    assert d["production_environment"] is True and d["transient_environment"] is False
    assert states(d)[-1] == "success"


@pytest.mark.parametrize("role", ROLES)
async def test_each_permission_level_against_each_command(
    gated: tuple[Stack, Path], role: str
) -> None:
    """octocat's preview runs (held at the gate); a user of `role` then tries everything."""
    stack, gates = gated
    number = await open_pr_as(stack, "octocat", {STAGING: edited(STAGING, role)})
    view = await stack.pull(number)
    head, main = view["head"]["sha"], view["base"]["sha"]
    await comment(stack, number, "octocat", "/deploy staging")
    await eventually(lambda: running_on(stack, head, "uni-a/staging"))
    login = f"user-{role}"
    await add_user(stack, login, role)
    lines = [
        "/help",
        "/plan",
        "/deploy uni-a/r-staging",
        f"/deploy uni-a/prod@{main[:7]}",
        "/unlock",
        "/cancel",
    ]
    cid = await comment(stack, number, login, "\n".join(lines))
    view = await stack.pull(number)
    body = reply(view, cid)
    allowed = role in WRITERS
    outcome = {line: ("✅" if f"✅ **`{line}`**" in body else "🚫") for line in lines}
    expected = {line: "✅" if allowed or line in ("/help", "/plan") else "🚫" for line in lines}
    assert outcome == expected, body
    assert reactions(view, cid) == ["eyes", "rocket" if allowed else "confused"]
    if not allowed:
        assert f"@{login} is neither a partner" in body
        assert f"@{login} has `{role}`" in body
    await open_gate(stack, gates)
    found = by_environment(await deployments(stack))
    assert ("uni-a/prod" in found) is allowed
    if allowed:  # its /cancel stopped everything this PR had asked for
        for env in ("uni-a/staging", "uni-a/r-staging", "uni-a/prod"):
            assert states(found[env])[-1] in ("error", "inactive"), env
    else:
        assert states(found["uni-a/staging"])[-1] == "success"


async def test_partners_added_in_a_pr_count_only_once_it_is_merged(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    await open_gate(stack, gates)
    settings = (await stack.control("GET", "/")).get("repo_dir")
    current = (Path(settings) / "hubbot.yaml").read_text()
    old = '"uni-a/*": ["@example-org/uni-a-partners"]'
    assert old in current
    grab = current.replace(old, '"uni-a/*": ["@example-org/uni-a-partners", mallory]')
    await add_user(stack, "mallory", "read")
    number = await open_pr_as(
        stack, "mallory", {"hubbot.yaml": grab, STAGING: edited(STAGING, "m")}, branch="grab"
    )
    cid = await comment(stack, number, "mallory", "/deploy staging")
    assert "refused: @mallory is neither a partner" in reply(await stack.pull(number), cid)
    assert await deployments(stack) == []

    # Merged, the same settings are the rules: mallory now previews uni-a's staging hubs.
    await stack.control("POST", f"/pulls/{number}/merge", {"user": "octocat"})
    await stack.deployed()
    other = await open_pr_as(stack, "mallory", {STAGING: edited(STAGING, "m2", 3)}, branch="m2")
    cid = await comment(stack, other, "mallory", "/deploy uni-a/staging")
    assert "✅ **`/deploy uni-a/staging`** queued `uni-a/staging`" in reply(
        await stack.pull(other), cid
    )
    await stack.deployed()


def plan_body(view: dict[str, Any]) -> str:
    """The PR's plan comment."""
    (body,) = [c["body"] for c in view["comments"] if c["body"].startswith("<!-- hubbot:plan -->")]
    return str(body)


async def test_cancel_on_a_merged_pr_stops_its_rollout_where_it_has_not_started(
    gated: tuple[Stack, Path],
) -> None:
    stack, gates = gated
    number, sha = await merge_change(
        stack, {COMMON: edited(COMMON, "stop")}, branch="stop", wait=False
    )
    await eventually(lambda: running_on(stack, sha, "uni-a/staging"))
    # The merge was octocat's: a partner may not stop it; a maintainer may.
    cid = await comment(stack, number, "alice-partner", "/cancel")
    assert "only whoever started these deploys (@octocat) or someone with write access" in reply(
        await stack.pull(number), cid
    )
    await add_user(stack, "maintainer-mo", "maintain")
    cid = await comment(stack, number, "maintainer-mo", "/cancel")
    body = reply(await stack.pull(number), cid)
    match = re.search(r"cancelled (.+?); (.+?) keeps? running: a merge's deploy", body)
    assert match, body
    cancelled, kept = (
        set(re.findall(r"`([^`]+)`", match[1])),
        set(re.findall(r"`([^`]+)`", match[2])),
    )
    assert {"uni-a/prod", "uni-a/r-prod"} <= cancelled and "uni-a/staging" in kept
    assert cancelled | kept == {"uni-a/staging", "uni-a/r-staging", "uni-a/prod", "uni-a/r-prod"}
    await open_gate(stack, gates)  # what was running finishes: never killed mid-upgrade
    found = by_environment(await deployments(stack), sha)
    for env in kept:
        assert states(found[env])[-1] == "success", env
    for env in cancelled:
        last = found[env]["statuses"][-1]
        assert (last["state"], last["description"]) == ("error", "cancelled by @maintainer-mo")
    view = await stack.pull(number)
    assert reactions(view, cid) == ["eyes", "rocket"]
    runs = [r for r in view["check_runs"] if r["name"] == "hubbot/deploy" and r["head_sha"] == sha]
    assert [(r["status"], r["conclusion"]) for r in runs] == [("completed", "cancelled")]
    # Nothing of it is left to cancel.
    cid = await comment(stack, number, "maintainer-mo", "/cancel")
    assert "nothing of #" in reply(await stack.pull(number), cid)
