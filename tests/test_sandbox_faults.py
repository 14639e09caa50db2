"""Injected faults: 5xx, timeouts and rate limits for the next N matching requests."""

from __future__ import annotations

import asyncio

import aiohttp
import gidgethub
import pytest
from gidgethub.aiohttp import GitHubAPI

from tests.sandbox_support import installation_client, repo_path


@pytest.fixture
async def gh(github_sandbox, sandbox_ctl):
    return await installation_client(sandbox_ctl.session, github_sandbox)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_for_the_next_n_requests(gh, github_sandbox, sandbox_ctl, status):
    repo = repo_path(github_sandbox)
    fault = await sandbox_ctl.post(
        "/faults", {"method": "GET", "path": r"/branches/", "status": status, "times": 2}
    )
    assert fault["times"] == 2
    await gh.getitem(repo)  # other paths are untouched
    for _ in range(2):
        with pytest.raises(gidgethub.GitHubBroken):
            await gh.getitem(f"{repo}/branches/main")
    assert (await gh.getitem(f"{repo}/branches/main"))["name"] == "main"
    assert [r.status for r in github_sandbox.requests[-4:]] == [200, status, status, 200]
    assert (await sandbox_ctl.get("/faults"))[0]["times"] == 0


async def test_method_filter(gh, github_sandbox, sandbox_ctl):
    number = await sandbox_ctl.open_pull({"x": "x"})
    await sandbox_ctl.post("/faults", {"method": "POST", "path": "/comments$", "status": 502})
    url = f"{repo_path(github_sandbox)}/issues/{number}/comments"
    assert await gh.getitem(url) == []
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.post(url, data={"body": "x"})
    assert (await gh.post(url, data={"body": "x"}))["body"] == "x"


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_rate_limit(gh, github_sandbox, sandbox_ctl, status):
    await sandbox_ctl.post("/faults", {"path": "/check-runs", "status": status})
    main = github_sandbox.context.repo.branch_sha("main")
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.post(
            f"{repo_path(github_sandbox)}/check-runs",
            data={"name": "hubbot/plan", "head_sha": main},
        )
    error = caught.value
    assert not isinstance(error, gidgethub.RateLimitExceeded)  # a secondary, not primary, limit
    assert error.status_code == status
    assert error.headers["Retry-After"] == "1"
    assert "secondary rate limit" in str(error)


async def test_timeout_longer_than_the_client_waits(gh, github_sandbox, sandbox_ctl):
    await sandbox_ctl.post("/faults", {"path": "/pulls$", "delay_seconds": 30})
    url = f"{repo_path(github_sandbox)}/pulls"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        impatient = GitHubAPI(
            session, "t", oauth_token=gh.oauth_token, base_url=github_sandbox.api_url
        )
        with pytest.raises(asyncio.TimeoutError):
            await impatient.getitem(url)
    assert await gh.getitem(url) == []  # the fault was used up by the first request


async def test_delay_then_status_and_custom_body(gh, github_sandbox, sandbox_ctl):
    await sandbox_ctl.post(
        "/faults",
        {
            "path": "/pulls$",
            "delay_seconds": 0.05,
            "status": 504,
            "headers": {"X-Test": "1"},
            "body": {"message": "slow"},
        },
    )
    with pytest.raises(gidgethub.GitHubBroken) as caught:
        await gh.getitem(f"{repo_path(github_sandbox)}/pulls")
    assert caught.value.headers["X-Test"] == "1"
    assert "slow" in str(caught.value)


async def test_primary_rate_limit_exhaustion(github_sandbox, sandbox_ctl):
    github_sandbox.context.gate.rate_limit = 3
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    repo = repo_path(github_sandbox)
    for _ in range(3):
        await gh.getitem(f"{repo}/pulls")
    with pytest.raises(gidgethub.RateLimitExceeded):
        await gh.getitem(f"{repo}/pulls")


async def test_bad_faults_and_clearing(sandbox_ctl):
    await sandbox_ctl.post("/faults", {"path": "x"}, expect=422)
    await sandbox_ctl.post("/faults", {"path": "(", "status": 500}, expect=422)
    await sandbox_ctl.post("/faults", {"status": 500, "times": 5})
    assert (await sandbox_ctl.call("DELETE", "/faults"))["cleared"] == 1
    assert await sandbox_ctl.get("/faults") == []


async def test_skip_fails_the_nth_matching_request(gh, github_sandbox, sandbox_ctl):
    url = f"{repo_path(github_sandbox)}/pulls"
    fault = await sandbox_ctl.post("/faults", {"path": "/pulls$", "status": 502, "skip": 2})
    assert fault["skip"] == 2
    assert await gh.getitem(url) == []
    assert await gh.getitem(url) == []
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.getitem(url)
    assert await gh.getitem(url) == []
    assert [r.status for r in github_sandbox.requests[-4:]] == [200, 200, 502, 200]
    await sandbox_ctl.post("/faults", {"status": 500, "skip": -1}, expect=422)
