"""Deployments and their statuses on the double, with GitHub's defaults and side effects."""

from __future__ import annotations

import gidgethub
import pytest

from tests.sandbox_support import git, installation_client, repo_path

STATES = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]


@pytest.fixture
async def gh(github_sandbox, sandbox_ctl):
    return await installation_client(sandbox_ctl.session, github_sandbox)


@pytest.fixture
def repo(github_sandbox) -> str:
    return repo_path(github_sandbox)


async def deploy(gh, repo, ref, environment, **extra):
    data = {
        "ref": ref,
        "environment": environment,
        "auto_merge": False,
        "required_contexts": [],
        **extra,
    }
    return await gh.post(f"{repo}/deployments", data=data)


@pytest.mark.parametrize("state", STATES)
async def test_every_status_state(gh, repo, state):
    dep = await deploy(gh, repo, "main", "alpha/staging", production_environment=False)
    status = await gh.post(
        f"{repo}/deployments/{dep['id']}/statuses",
        data={
            "state": state,
            "environment_url": "https://staging.alpha.example",
            "log_url": "https://logs.example/1",
            "description": "rolling out",
        },
    )
    assert (status["state"], status["environment_url"], status["log_url"]) == (
        state,
        "https://staging.alpha.example",
        "https://logs.example/1",
    )
    assert status["target_url"] == "https://logs.example/1"
    assert status["creator"]["login"] == "hubbot[bot]"


async def test_defaults_filters_and_order(gh, repo, github_sandbox):
    main = git(github_sandbox.context.repo.path, "rev-parse", "main")
    prod = await gh.post(f"{repo}/deployments", data={"ref": "main", "required_contexts": []})
    assert (prod["environment"], prod["production_environment"], prod["task"]) == (
        "production",
        True,
        "deploy",
    )
    assert prod["sha"] == main and prod["ref"] == "main"
    staging = await deploy(
        gh, repo, main, "alpha/staging", transient_environment=True, payload={"hub": "staging"}
    )
    assert staging["transient_environment"] is True and staging["payload"] == {"hub": "staging"}
    assert [d["id"] async for d in gh.getiter(f"{repo}/deployments")] == [staging["id"], prod["id"]]
    only = [d["id"] async for d in gh.getiter(f"{repo}/deployments?environment=alpha/staging")]
    assert only == [staging["id"]]
    assert [d["id"] async for d in gh.getiter(f"{repo}/deployments?ref=main")] == [prod["id"]]
    assert len([d async for d in gh.getiter(f"{repo}/deployments?sha={main}")]) == 2
    assert (await gh.getitem(f"{repo}/deployments/{prod['id']}"))["id"] == prod["id"]


async def test_statuses_newest_first_and_visible_in_control(gh, repo, sandbox_ctl):
    number = await sandbox_ctl.open_pull({"x": "x"})
    head = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    dep = await deploy(gh, repo, head, "alpha/staging", transient_environment=True)
    for state in ("queued", "in_progress", "success"):
        await gh.post(f"{repo}/deployments/{dep['id']}/statuses", data={"state": state})
    listed = [s["state"] async for s in gh.getiter(f"{repo}/deployments/{dep['id']}/statuses")]
    assert listed == ["success", "in_progress", "queued"]
    view = await sandbox_ctl.get(f"/pulls/{number}")
    assert [s["state"] for s in view["deployments"][0]["statuses"]] == [
        "queued",
        "in_progress",
        "success",
    ]
    assert (await sandbox_ctl.get("/deployments"))[0]["id"] == dep["id"]


async def test_auto_inactive_follows_githubs_rule(gh, repo):
    async def succeed(dep, **extra):
        await gh.post(
            f"{repo}/deployments/{dep['id']}/statuses", data={"state": "success", **extra}
        )

    async def last_state(dep):
        return (await gh.getitem(f"{repo}/deployments/{dep['id']}/statuses"))[0]["state"]

    old = await deploy(gh, repo, "main", "alpha/staging", production_environment=False)
    await succeed(old)
    prod = await deploy(gh, repo, "main", "alpha/prod", production_environment=True)
    await succeed(prod)
    new = await deploy(gh, repo, "main", "alpha/staging", production_environment=False)
    await succeed(new)
    assert await last_state(old) == "inactive"
    assert await last_state(new) == "success"
    newer_prod = await deploy(gh, repo, "main", "alpha/prod", production_environment=True)
    await succeed(newer_prod)
    assert await last_state(prod) == "success"  # production deployments are never inactivated
    kept = await deploy(gh, repo, "main", "alpha/staging", production_environment=False)
    await succeed(kept)
    await succeed(
        await deploy(gh, repo, "main", "alpha/staging", production_environment=False),
        auto_inactive=False,
    )
    assert await last_state(kept) == "success"


async def test_required_contexts_check_the_commits_check_runs(
    gh, repo, sandbox_ctl, github_sandbox
):
    main = git(github_sandbox.context.repo.path, "rev-parse", "main")
    await gh.post(
        f"{repo}/check-runs",
        data={"name": "hubbot/plan", "head_sha": main, "conclusion": "failure"},
    )
    async with sandbox_ctl.session.post(
        f"{github_sandbox.api_url}{repo}/deployments",
        json={"ref": main, "auto_merge": False},
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as resp:
        assert resp.status == 409
        body = await resp.json()
    assert body["message"] == f"Conflict: Commit status checks failed for {main}."
    assert body["errors"][0]["contexts"] == [{"context": "hubbot/plan", "state": "failure"}]
    bypass = await deploy(gh, repo, main, "alpha/prod")  # required_contexts: [] bypasses
    assert bypass["sha"] == main


async def test_auto_merge_merges_the_default_branch_into_a_branch_behind(
    gh, repo, sandbox_ctl, github_sandbox
):
    await sandbox_ctl.post("/branches", {"name": "preview", "files": {"p.txt": "p"}})
    await sandbox_ctl.post("/push", {"branch": "main", "files": {"m.txt": "m"}})
    before = git(github_sandbox.context.repo.path, "rev-parse", "preview")
    answer = await gh.post(f"{repo}/deployments", data={"ref": "preview", "required_contexts": []})
    assert answer == {"message": "Auto-merged main into preview on deployment."}
    repo_dir = github_sandbox.context.repo.path
    merged = git(repo_dir, "rev-parse", "preview")
    assert merged != before
    assert git(repo_dir, "rev-list", "--parents", "-n1", "preview").split()[1] == before
    assert (await gh.post(f"{repo}/deployments", data={"ref": "preview", "required_contexts": []}))[
        "sha"
    ] == merged


async def test_auto_merge_conflict_is_409(gh, repo, sandbox_ctl):
    path = "config/clusters/alpha/prod.values.yaml"
    await sandbox_ctl.post("/branches", {"name": "preview", "files": {path: "a\n"}})
    await sandbox_ctl.post("/push", {"branch": "main", "files": {path: "b\n"}})
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.post(f"{repo}/deployments", data={"ref": "preview", "required_contexts": []})
    assert caught.value.status_code == 409


async def test_invalid_deployments(gh, repo, github_sandbox):
    with pytest.raises(gidgethub.BadRequest) as caught:
        await deploy(gh, repo, "no-such-ref", "x")
    assert caught.value.status_code == 422
    dep = await deploy(gh, repo, "main", "x")
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.post(
            f"{repo}/deployments/{dep['id']}/statuses",
            data={"state": "success", "description": "d" * 141},
        )
    assert caught.value.status_code == 422
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.post(f"{repo}/deployments/{dep['id']}/statuses", data={"state": "done"})
    assert caught.value.status_code == 422
    assert github_sandbox.violations  # the bad state is caught by the description too
    github_sandbox.violations.clear()
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(f"{repo}/deployments/424242")
    assert caught.value.status_code == 404
