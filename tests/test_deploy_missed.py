"""A push to the default branch that hubbot never handled deploys when hubbot starts.

The bot is stopped and the merge happens while its webhook URL does not answer (the
double's delivery fails, and GitHub never sends it again). Started again, recovery finds
the default branch's head without a `hubbot/deploy` check run and deploys the range from
the last commit that has one, exactly once; two missed merges deploy as one range; a head
that has its check costs recovery 2 calls and deploys nothing; with no deployed commit
within the searched history, it is taken as a new install: a warning, nothing deploys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from bot.deploys import missed
from bot.web.keys import SERVICES
from tests.deploy_support import (
    COMMON,
    by_environment,
    deploy_runs,
    deploy_stack,
    deployments,
    edited,
    example_repo,
    hubbot_yaml,
    merge_change,
    needs_tools,
    states,
    tools_path,
)
from tests.e2e_support import Stack
from tests.test_deploy_restart import STAGING, UNI_A, start_bot

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

OCEAN = "config/clusters/ocean-lab/staging.values.yaml"
DONE = ["queued", "in_progress", "success"]


async def merge_while_down(stack: Stack, files: dict[str, str | None], branch: str) -> str:
    """Merge with no webhook URL, as while every replica is down: the push is never handled."""
    await stack.control("POST", "/webhook", {"url": None})
    _, sha = await merge_change(stack, files, branch=branch, wait=False)
    await stack.sandbox.drain()  # the delivery failed; GitHub does not redeliver by itself
    failed = [d for d in stack.sandbox.deliveries if d.event == "push"][-1]
    assert failed.error == "no webhook URL configured"
    return sha


def recovery_calls(stack: Stack, since: int) -> list[str]:
    """What missed-push recovery asked GitHub: branch heads, deploy checks, commit listings."""
    calls = []
    for r in stack.requests_since(since):
        query = parse_qs(r.query)
        if r.method != "GET":
            continue
        if r.path.endswith("/branches/main") or r.path.endswith("/commits"):
            calls.append(r.path)
        elif r.path.endswith("/check-runs") and query.get("check_name") == ["hubbot/deploy"]:
            calls.append(r.path)
    return calls


async def deployed_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checker: Any, http: aiohttp.ClientSession
) -> tuple[Stack, Any, str]:
    """A first bot that deployed one merge normally (its commit has its check), then stopped."""
    needs_tools()
    tools_path(monkeypatch)
    repo = example_repo(tmp_path, hubbot_yaml=hubbot_yaml())
    sandbox, first = await deploy_stack(repo, checker=checker)
    stack = Stack(sandbox, f"http://127.0.0.1:{first.addresses[0][1]}", first.app, http, [])
    await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
    _, sha = await merge_change(stack, {STAGING: edited(STAGING, "first")}, branch="first")
    await first.cleanup()
    return stack, repo, sha


async def test_a_merge_missed_while_down_deploys_at_start_up_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    async with aiohttp.ClientSession() as http:
        stack, repo, first = await deployed_stack(tmp_path, monkeypatch, openapi_checker, http)
        sandbox = stack.sandbox
        try:
            sha = await merge_while_down(stack, {COMMON: edited(COMMON, "missed")}, "missed")
            assert by_environment(await deployments(stack), sha) == {}

            stack, second = await start_bot(sandbox, repo, http)
            try:
                assert stack.app[SERVICES].deploys.recovery["missed_pushes"] == 1
                await stack.deployed()
                found = by_environment(await deployments(stack), sha)
                assert set(found) == set(UNI_A)
                assert {e: states(d) for e, d in found.items()} == {e: DONE for e in UNI_A}
                source = found["uni-a/prod"]["payload"]["hubbot"]["source"]
                assert source.startswith(f"{missed.SOURCE}: {first[:7]}..{sha[:7]}")
                assert "(merge of #2)" in source
                runs = deploy_runs(await stack.pull(2), sha)
                assert [(r["status"], r["conclusion"]) for r in runs] == [("completed", "success")]
            finally:
                await second.cleanup()

            # Started once more: the head has its check, so nothing deploys, in 2 calls.
            since = len(sandbox.requests)
            stack, third = await start_bot(sandbox, repo, http)
            try:
                await stack.deployed()
                assert stack.app[SERVICES].deploys.recovery["missed_pushes"] == 0
                assert len(recovery_calls(stack, since)) == 2
                assert len(await deployments(stack)) == 1 + len(UNI_A)  # the first merge's 1
                assert len(deploy_runs(await stack.pull(2), sha)) == 1
            finally:
                await third.cleanup()
        finally:
            await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


async def test_two_missed_merges_deploy_as_one_range_from_the_last_deployed_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    async with aiohttp.ClientSession() as http:
        stack, repo, first = await deployed_stack(tmp_path, monkeypatch, openapi_checker, http)
        sandbox = stack.sandbox
        try:
            one = await merge_while_down(stack, {COMMON: edited(COMMON, "one")}, "one")
            two = await merge_while_down(stack, {OCEAN: edited(OCEAN, "two")}, "two")

            stack, second = await start_bot(sandbox, repo, http)
            try:
                assert stack.app[SERVICES].deploys.recovery["missed_pushes"] == 1
                await stack.deployed()
                everything = await deployments(stack)
                assert by_environment(everything, one) == {}  # deployed at the head, once
                found = by_environment(everything, two)
                assert set(found) == {*UNI_A, "ocean-lab/staging"}
                assert all(states(d) == DONE for d in found.values())
                source = found["ocean-lab/staging"]["payload"]["hubbot"]["source"]
                assert f"{first[:7]}..{two[:7]}" in source
                runs = deploy_runs(await stack.pull(3), two)
                assert [r["conclusion"] for r in runs] == ["success"]
            finally:
                await second.cleanup()
        finally:
            await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


async def test_no_deployed_commit_within_the_bound_is_taken_as_a_new_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    async with aiohttp.ClientSession() as http:
        stack, repo, _ = await deployed_stack(tmp_path, monkeypatch, openapi_checker, http)
        sandbox = stack.sandbox
        try:
            await merge_while_down(stack, {COMMON: edited(COMMON, "near")}, "near")
            sha = await merge_while_down(stack, {OCEAN: edited(OCEAN, "far")}, "far")
            # The listing holds the head alone: the search sees its parent (a missed merge)
            # and no further, so the deployed commit before it is out of reach.
            monkeypatch.setattr(missed, "HISTORY", 1)

            stack, second = await start_bot(sandbox, repo, http)
            try:
                recovery = stack.app[SERVICES].deploys.recovery
                assert (recovery["missed_pushes"], recovery["missed_unknown"]) == (0, 1)
                await stack.deployed()
                # Like a repository hubbot was just installed on: a warning, no red check.
                assert by_environment(await deployments(stack), sha) == {}
                assert deploy_runs(await stack.pull(3), sha) == []
            finally:
                await second.cleanup()
        finally:
            await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


async def test_a_missed_push_whose_deploy_fails_at_start_up_fails_the_heads_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    async with aiohttp.ClientSession() as http:
        stack, repo, _ = await deployed_stack(tmp_path, monkeypatch, openapi_checker, http)
        sandbox = stack.sandbox
        try:
            sha = await merge_while_down(stack, {COMMON: edited(COMMON, "broken")}, "broken")
            fault = {"method": "GET", "path": f"/commits/{sha}/pulls", "status": 502, "times": 20}
            await stack.control("POST", "/faults", fault)  # its merged PR cannot be read

            stack, second = await start_bot(sandbox, repo, http)
            try:
                recovery = stack.app[SERVICES].deploys.recovery
                assert (recovery["state"], recovery["missed_pushes"]) == ("partial", 1)
                assert by_environment(await deployments(stack), sha) == {}
                (run,) = deploy_runs(await stack.pull(2), sha)
                assert (run["status"], run["conclusion"]) == ("completed", "failure")
                assert "start-up recovery of the missed push failed" in run["output"]["summary"]
            finally:
                await second.cleanup()
        finally:
            await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)
