"""End to end: `hubbot serve` and the GitHub double on loopback, over a fresh copy of config/.

The bot and the double run in this process on real sockets (one test runs both as
real subprocesses). Webhooks are the double's, signed; the PR is driven through its
control API; what the PR shows is read back from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import EXAMPLE, webhook_headers
from tests.e2e_support import (  # noqa: F401 - re-exported for other e2e modules
    FAST,
    SECRET,
    Stack,
    fresh_repo,
    git,
    record_tokens,
    start_stack,
)

sandbox_app = pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")
pytest.importorskip("bot.core.semantic", reason="the core planner")

MARKER = "<!-- hubbot:plan -->"
STAGING = "config/clusters/uni-a/staging.values.yaml"
STAGING_TEXT = "jupyterhub:\n  singleuser:\n    memory:\n      guarantee: 512M\n      limit: 1G\n"


@pytest.fixture
async def stack(tmp_path: Path, openapi_checker: Any) -> AsyncIterator[Stack]:
    if not EXAMPLE.is_dir():
        pytest.skip("config/ (the example repository) is absent")
    repo = fresh_repo(EXAMPLE, tmp_path / "repo")
    sandbox, runner = await start_stack(repo, checker=openapi_checker)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        stack = Stack(sandbox, f"http://127.0.0.1:{port}", runner.app, http, [])
        record_tokens(runner.app, stack.tokens)
        await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
        yield stack
    await runner.cleanup()
    await sandbox.close()
    # Every request the bot made is one the real API accepts, and got a well-formed answer.
    assert sandbox.violations == [], "\n".join(sandbox.violations)


async def open_pr(stack: Stack, files: dict[str, str | None], branch: str = "edit") -> int:
    await stack.control("POST", "/branches", {"name": branch, "from": "main", "files": files})
    answer = await stack.control("POST", "/pulls", {"head": branch, "base": "main"})
    await stack.settle()
    return int(answer["number"])


def plan_runs(view: dict[str, Any], sha: str) -> list[dict[str, Any]]:
    return [r for r in view["check_runs"] if r["name"] == "hubbot/plan" and r["head_sha"] == sha]


async def test_a_pr_gets_one_comment_and_a_check_with_exact_annotations(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = STAGING_TEXT + "nfs:\n  enabled: maybe\n"
    number = await open_pr(stack, {STAGING: bad})
    view = await stack.pull(number)
    (comment,) = view["comments"]
    assert comment["body"].startswith(MARKER)
    assert comment["user_type"] == "Bot"
    assert "error" in comment["body"] and "staging.values.yaml" in comment["body"]
    (run,) = plan_runs(view, view["head"]["sha"])
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    where = {(a["path"], a["start_line"], a["annotation_level"]) for a in run["annotations"]}
    assert (STAGING, 7, "failure") in where  # `enabled: maybe` is line 7 of the new file

    # A second push fixes it: the same comment is edited, a new check run succeeds.
    await stack.control(
        "POST", f"/pulls/{number}/commits", {"files": {STAGING: STAGING_TEXT.replace("1G", "2G")}}
    )
    await stack.settle()
    view = await stack.pull(number)
    (again,) = view["comments"]
    assert again["id"] == comment["id"] and again["body"] != comment["body"]
    assert "uni-a" in again["body"] and "staging" in again["body"]
    # Reviewers read the diff of the hub's effective values, in a details block.
    diff = again["body"].split("### Values diffs", 1)[1]
    assert "<details>" in diff and "```diff" in diff
    assert "-      limit: 1G" in diff and "+      limit: 2G" in diff
    (run,) = plan_runs(view, view["head"]["sha"])
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["annotations"] == []

    # Reverting the change: the comment says nothing deploys, never stale.
    await stack.control("POST", f"/pulls/{number}/commits", {"files": {STAGING: STAGING_TEXT}})
    await stack.settle()
    view = await stack.pull(number)
    assert "Nothing will deploy" in view["comments"][0]["body"]
    assert all(r["status"] == "completed" for r in view["check_runs"])
    scan_for_secrets(stack, caplog.text)


def scan_for_secrets(stack: Stack, text: str) -> None:
    """No token, key or webhook secret in what the bot logged or wrote on GitHub."""
    secrets = [SECRET, "PRIVATE KEY", stack.sandbox.private_key.splitlines()[1]]
    assert stack.tokens, "no installation token was issued"
    secrets += stack.tokens
    published = json.dumps([c.body for c in stack.sandbox.state.comments.values()])
    published += json.dumps([r.output for r in stack.sandbox.state.check_runs.values()])
    for secret in secrets:
        assert secret not in text
        assert secret not in published


async def test_a_redelivered_event_is_processed_once(stack: Stack) -> None:
    number = await open_pr(stack, {STAGING: STAGING_TEXT.replace("1G", "3G")})
    deliveries = await stack.control("GET", "/deliveries")
    opened = next(d for d in deliveries if d["event"] == "pull_request" and d["action"] == "opened")
    before = len(stack.sandbox.requests)
    again = await stack.control("POST", "/redeliver", {"delivery": opened["id"]})
    await stack.settle()
    assert again["status"] == 202
    assert len(stack.sandbox.requests) == before  # nothing was done twice
    view = await stack.pull(number)
    assert len(view["comments"]) == 1
    assert len(plan_runs(view, view["head"]["sha"])) == 1


@pytest.mark.parametrize(
    ("case", "status"),
    [("unsigned", 401), ("wrong-secret", 401), ("bad-json", 400), ("no-event", 400), ("huge", 413)],
)
async def test_the_bot_answers_bad_deliveries(stack: Stack, case: str, status: int) -> None:
    body = b"{not json" if case == "bad-json" else json.dumps({"zen": "x"}).encode()
    if case == "huge":
        body = b'{"pad": "' + b"x" * (25 * 1024 * 1024 + 10) + b'"}'
    secret = None if case == "unsigned" else ("other" if case == "wrong-secret" else SECRET)
    headers = webhook_headers("ping", body, secret)
    if case == "no-event":
        del headers["X-GitHub-Event"]
    import io

    async with stack.http.post(
        f"{stack.bot_url}/webhook", data=io.BytesIO(body), headers=headers
    ) as resp:
        assert resp.status == status


@pytest.mark.parametrize(
    "fault",
    [
        {"method": "GET", "path": "/compare/", "status": 502, "times": 2},
        {"method": "GET", "path": "/codeload/", "delay_seconds": 3, "times": 1},
        {
            "method": "PATCH",
            "path": "/check-runs/",
            "status": 403,
            "times": 1,
            "headers": {"Retry-After": "0"},
        },
        {"method": "POST", "path": "/issues/\\d+/comments", "status": 502, "times": 1},
        {
            "method": "POST",
            "path": "/check-runs$",
            "status": 429,
            "times": 1,
            "headers": {"Retry-After": "0"},
        },
    ],
    ids=["compare-502", "tarball-timeout", "check-secondary-limit", "comment-502", "check-429"],
)
async def test_faults_mid_way_still_end_with_a_correct_comment_and_a_concluded_check(
    stack: Stack, fault: dict[str, Any]
) -> None:
    await stack.control("POST", "/faults", fault)
    number = await open_pr(stack, {STAGING: STAGING_TEXT.replace("1G", "4G")})
    view = await stack.pull(number)
    assert len(view["comments"]) == 1 and view["comments"][0]["body"].startswith(MARKER)
    assert "uni-a" in view["comments"][0]["body"]
    runs = plan_runs(view, view["head"]["sha"])
    assert runs and all(r["status"] == "completed" for r in runs)
    assert runs[-1]["conclusion"] == "success"
    assert (await stack.control("GET", "/faults"))[0]["times"] == 0  # the fault did happen


async def test_an_expired_token_is_replaced_mid_way(stack: Stack) -> None:
    number = await open_pr(stack, {STAGING: STAGING_TEXT.replace("1G", "5G")})
    await stack.control("POST", "/tokens/expire")
    await stack.control(
        "POST", f"/pulls/{number}/commits", {"files": {STAGING: STAGING_TEXT.replace("1G", "6G")}}
    )
    await stack.settle()
    view = await stack.pull(number)
    assert plan_runs(view, view["head"]["sha"])[-1]["conclusion"] == "success"
