""" "Re-run" on a `hubbot/deploy` check run, end to end with real helm: what failed deploys again.

Write access is needed (as `/deploy <cluster>/<hub>@<sha>`); only the default branch's head
is re-run (never a roll back); a rollout with nothing failed deploys nothing, and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import (
    COMMON,
    OCEAN_COMMON,
    by_environment,
    deploy_runs,
    deployments,
    edited,
    hubbot_yaml,
    merge_change,
    needs_tools,
    running,
    states,
    target_records,
    tools_path,
)
from tests.e2e_support import Stack

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

ANSWER = "<!-- hubbot:deploy-rerun"


async def rerun(stack: Stack, run_id: int, user: str) -> None:
    """Click "Re-run" on a check run as `user`, and wait for everything it started."""
    await stack.control("POST", f"/check-runs/{run_id}/rerequest", {"user": user})
    await stack.deployed()


def answers(view: dict[str, Any]) -> list[str]:
    """The bot's answers to re-runs on the PR, oldest first."""
    return [c["body"] for c in view["comments"] if c["body"].startswith(ANSWER)]


async def test_rerun_redeploys_what_failed_for_engineers_only_and_never_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    marks = tmp_path / "marks"
    marks.mkdir()
    # uni-a/staging fails until the marker exists (exact names: uni-a/r-staging deploys).
    fails = f"( test {{cluster}}/{{hub}} != uni-a/staging || test -e {marks}/fixed ) &&"
    config = hubbot_yaml(before_command=fails)
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        await stack.control("POST", "/users", {"login": "engineer", "permission": "write"})
        await stack.control("POST", "/users", {"login": "triager", "permission": "triage"})
        files = {COMMON: edited(COMMON, "rerun"), OCEAN_COMMON: edited(OCEAN_COMMON, "rerun")}
        number, sha = await merge_change(stack, files, branch="rerun")
        first = by_environment(await deployments(stack), sha)
        assert {env: states(d)[-1] for env, d in first.items()} == {
            "uni-a/staging": "failure",
            "uni-a/r-staging": "success",
            "uni-a/prod": "failure",  # blocked by the staging gate
            "uni-a/r-prod": "failure",
            "ocean-lab/staging": "success",
        }
        (failed,) = deploy_runs(await stack.pull(number), sha)
        assert failed["conclusion"] == "failure"
        total = len(await deployments(stack))

        # Triage may not deploy: refused on the PR, nothing deployed, no new check run.
        await rerun(stack, failed["id"], "triager")
        view = await stack.pull(number)
        (refused,) = answers(view)
        assert "@triager" in refused and "write access" in refused and "`triage`" in refused
        assert len(await deployments(stack)) == total
        assert len(deploy_runs(view, sha)) == 1

        # An engineer's re-run redeploys exactly the failed and the blocked targets.
        (marks / "fixed").touch()
        before = len(stack.sandbox.requests)
        await rerun(stack, failed["id"], "engineer")
        everything = await deployments(stack)
        again = [d for d in everything[total:] if d["sha"] == sha]
        assert sorted(d["environment"] for d in again) == [
            "uni-a/prod",
            "uni-a/r-prod",
            "uni-a/staging",
        ]
        for d in again:
            assert d["payload"]["hubbot"]["kind"] == "redeploy"
            assert d["payload"]["hubbot"]["actor"] == "engineer"
            assert states(d) == ["queued", "in_progress", "success"], d["environment"]
        # Staging before prod, as for a merge.
        times = await target_records(stack, sha)  # the redeploy's, newer than the merge's
        assert times["uni-a/staging"].ended < times["uni-a/prod"].started
        view = await stack.pull(number)
        runs = deploy_runs(view, sha)
        assert len(runs) == 2
        newest = max(runs, key=lambda r: r["id"])
        assert newest["conclusion"] == "success" and "Redeploy" in newest["output"]["title"]
        body = next(c["body"] for c in view["comments"] if "@engineer" in c["body"])
        assert "re-run of hubbot/deploy by @engineer" in body
        reads = [
            (r.method, r.path.split("/repos/", 1)[-1])
            for r in stack.sandbox.requests[before:]
            if r.method == "GET" and "/deployments" in r.path
        ]
        # One listing, one status read per environment at the commit: no more.
        assert len([p for m, p in reads if p.endswith("/deployments")]) == 1
        assert len([p for m, p in reads if p.endswith("/statuses")]) == len(first)

        # Re-run on the (now successful) newest check: nothing failed, nothing deployed, said.
        total = len(await deployments(stack))
        await rerun(stack, newest["id"], "engineer")
        assert len(await deployments(stack)) == total
        said = answers(await stack.pull(number))[-1]
        assert "@engineer" in said and "nothing to re-run" in said

        # Once main moved on, a re-run would roll back: refused, pointing at `/deploy`.
        await stack.control("POST", "/push", {"branch": "main", "files": {"NOTES.md": "x\n"}})
        await stack.deployed()
        total = len(await deployments(stack))
        await rerun(stack, failed["id"], "engineer")
        assert len(await deployments(stack)) == total
        moved = answers(await stack.pull(number))[-1]
        assert "no longer the head" in moved and f"/deploy <cluster>/<hub>@{sha[:7]}" in moved
        assert len(answers(await stack.pull(number))) == 3
