"""Slash commands end to end: `hubbot serve` and the GitHub double over a fresh copy of config/.

People comment through the double's control API as users of each permission level; what
the bot did is read back from the double: replies, reactions, plan comments, check runs
and requests. Every request the bot makes is checked against GitHub's REST description
(the `stack` fixture). These cases are the ones decided before any deploy is queued.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests import test_pr_e2e
from tests.conftest import EXAMPLE, sample, webhook_headers
from tests.e2e_support import SECRET, STAGING, STAGING_TEXT, Stack
from tests.test_pr_e2e import plan_runs, scan_for_secrets

stack = test_pr_e2e.stack  # the bot and the double, wired (a fixture)

REPLY = "<!-- hubbot:reply {} -->"
CHANGE = {STAGING: STAGING_TEXT.replace("1G", "3G")}
OCEAN = "config/clusters/ocean-lab/staging.values.yaml"


async def add_user(stack: Stack, login: str, permission: str = "none", kind: str = "User") -> None:
    await stack.control("POST", "/users", {"login": login, "permission": permission, "type": kind})


async def open_pr_as(
    stack: Stack,
    author: str,
    files: dict[str, str | None],
    *,
    branch: str = "edit",
    fork: bool = False,
) -> int:
    await stack.control(
        "POST", "/branches", {"name": branch, "from": "main", "files": files, "user": author}
    )
    answer = await stack.control(
        "POST", "/pulls", {"head": branch, "base": "main", "user": author, "fork": fork}
    )
    await stack.settle()
    return int(answer["number"])


async def comment(stack: Stack, number: int, user: str, body: str) -> int:
    answer = await stack.control("POST", f"/pulls/{number}/comments", {"user": user, "body": body})
    await stack.settle()
    return int(answer["id"])


def replies(view: dict[str, Any], comment_id: int) -> list[str]:
    marker = REPLY.format(comment_id)
    return [c["body"] for c in view["comments"] if c["body"].startswith(marker)]


def reply(view: dict[str, Any], comment_id: int) -> str:
    (body,) = replies(view, comment_id)  # exactly one reply per comment
    return body


def reactions(view: dict[str, Any], comment_id: int) -> list[str]:
    (c,) = [c for c in view["comments"] if c["id"] == comment_id]
    return [r["content"] for r in c["reactions"]]


async def deployments(stack: Stack) -> list[Any]:
    data: list[Any] = await stack.control("GET", "/deployments")
    return data


async def test_help_by_anyone_replies_with_the_table_and_rocket(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    await add_user(stack, "stranger")
    cid = await comment(stack, number, "stranger", "Thanks!\n/help")
    view = await stack.pull(number)
    body = reply(view, cid)
    assert body.startswith(REPLY.format(cid) + "\n@stranger")
    assert "| `/deploy <cluster>/<hub>@<sha>` | write access |" in body
    assert reactions(view, cid) == ["eyes", "rocket"]


async def test_plan_by_a_reader_refreshes_the_plan_comment_and_check(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    view = await stack.pull(number)
    sha = view["head"]["sha"]
    assert len(plan_runs(view, sha)) == 1
    await add_user(stack, "reader", "read")
    cid = await comment(stack, number, "reader", "/plan")
    view = await stack.pull(number)
    assert len(plan_runs(view, sha)) == 2
    assert all(r["status"] == "completed" for r in plan_runs(view, sha))
    plan_comments = [c for c in view["comments"] if c["body"].startswith("<!-- hubbot:plan -->")]
    assert len(plan_comments) == 1
    assert f"re-planned at `{sha[:7]}`" in reply(view, cid)
    assert reactions(view, cid) == ["eyes", "rocket"]


async def test_near_misses_get_one_reply_with_suggestions_and_no_eyes(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    before = len(await deployments(stack))
    cid = await comment(stack, number, "octocat", "/deplyo staging\n/deploy stagign\n/plna")
    view = await stack.pull(number)
    body = reply(view, cid)
    assert "`/deplyo` is not a hubbot command; did you mean `/deploy`?" in body
    assert "did you mean `/deploy staging`?" in body
    assert "did you mean `/plan`?" in body
    assert body.index("/deplyo") < body.index("stagign") < body.index("/plna")
    assert reactions(view, cid) == ["confused"]
    assert len(await deployments(stack)) == before


async def test_valid_and_unknown_lines_share_one_reply_and_end_confused(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    cid = await comment(stack, number, "octocat", "/help\n/halp")
    view = await stack.pull(number)
    body = reply(view, cid)
    assert "✅ **`/help`**" in body and "did you mean `/help`?" in body
    assert reactions(view, cid) == ["eyes", "confused"]


@pytest.mark.parametrize(
    "body",
    [
        "> /deploy staging",
        "```\n/deploy staging\n```",
        "<!-- /deploy staging -->",
        "    /deploy staging",
        "please run `/deploy staging` when ready",
        "LGTM",
    ],
    ids=["quoted", "fenced", "html-comment", "indented", "inline-code", "no-command"],
)
async def test_a_comment_without_command_lines_gets_nothing_at_all(stack: Stack, body: str) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    before = len(stack.sandbox.requests)
    cid = await comment(stack, number, "octocat", body)
    assert len(stack.sandbox.requests) == before  # not one call: no reaction, no reply
    view = await stack.pull(number)
    assert replies(view, cid) == [] and reactions(view, cid) == []


@pytest.mark.parametrize("who", ["app", "other-bot", "bot-suffix"])
async def test_comments_by_bots_run_nothing(stack: Stack, who: str) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    if who == "app":
        login = (await stack.control("GET", "/"))["bot_login"]
    elif who == "other-bot":
        login = "ci-runner"
        await add_user(stack, login, "admin", kind="Bot")
    else:
        login = "renovate[bot]"
        await add_user(stack, login, "admin")
    before = len(stack.sandbox.requests)
    cid = await comment(stack, number, login, "/deploy staging\n/help\n/plan")
    assert len(stack.sandbox.requests) == before
    view = await stack.pull(number)
    assert replies(view, cid) == [] and reactions(view, cid) == []


async def test_edited_and_deleted_comments_run_nothing(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    cid = await comment(stack, number, "octocat", "hello")
    before = len(stack.sandbox.requests)
    await stack.control("PATCH", f"/comments/{cid}", {"user": "octocat", "body": "/help\n/plan"})
    await stack.settle()
    assert len(stack.sandbox.requests) == before
    await stack.control("DELETE", f"/comments/{cid}?user=octocat")
    await stack.settle()
    assert len(stack.sandbox.requests) == before
    deliveries = await stack.control("GET", "/deliveries")
    actions = [d["action"] for d in deliveries if d["event"] == "issue_comment"]
    assert actions[-2:] == ["edited", "deleted"]  # they did arrive


async def test_comments_on_plain_issues_are_ignored(stack: Stack) -> None:
    # The double has no plain issues: deliver one by hand, shaped like GitHub's example.
    payload = sample("issue_comment", "created")
    assert payload["issue"].get("pull_request") is None
    payload["comment"]["body"] = "/help"
    payload["installation"] = {"id": stack.sandbox.installation_id}
    data = json.dumps(payload).encode()
    before = len(stack.sandbox.requests)
    headers = webhook_headers("issue_comment", data, SECRET)
    async with stack.http.post(f"{stack.bot_url}/webhook", data=data, headers=headers) as resp:
        assert resp.status == 202
    await stack.settle()
    assert len(stack.sandbox.requests) == before


async def test_a_stranger_may_not_deploy(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    await add_user(stack, "stranger")
    cid = await comment(stack, number, "stranger", "/deploy staging")
    view = await stack.pull(number)
    body = reply(view, cid)
    assert "🚫 **`/deploy staging`** refused: @stranger is neither a partner" in body
    assert reactions(view, cid) == ["eyes", "confused"]
    assert await deployments(stack) == []


async def test_a_partner_may_not_deploy_another_clusters_hub(stack: Stack) -> None:
    await add_user(stack, "alice-partner", "read")
    number = await open_pr_as(stack, "alice-partner", CHANGE)
    cid = await comment(stack, number, "alice-partner", "/deploy ocean-lab/staging")
    body = reply(await stack.pull(number), cid)
    assert "@alice-partner is a partner on `uni-a` only, not on `ocean-lab/staging`" in body
    assert await deployments(stack) == []


async def test_a_partner_may_not_deploy_a_fork_pr(stack: Stack) -> None:
    await add_user(stack, "alice-partner", "read")
    number = await open_pr_as(stack, "alice-partner", CHANGE, fork=True)
    assert (await stack.pull(number))["fork"] is True
    cid = await comment(stack, number, "alice-partner", "/deploy uni-a/staging")
    body = reply(await stack.pull(number), cid)
    assert "this PR comes from a fork: only users with write access may deploy" in body
    assert await deployments(stack) == []


async def test_nobody_deploys_prod_from_a_pr(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    cid = await comment(stack, number, "octocat", "/deploy uni-a/prod")
    body = reply(await stack.pull(number), cid)
    assert "`uni-a/prod` is not a staging hub: a PR deploys to staging only" in body
    assert await deployments(stack) == []


async def test_settings_proposed_in_the_pr_grant_nothing(stack: Stack) -> None:
    """A PR that makes its author a partner in hubbot.yaml: the rules of main still apply."""
    settings = (EXAMPLE / "hubbot.yaml").read_text()
    assert '"uni-a/*": ["@example-org/uni-a-partners"]' in settings
    grab = settings.replace(
        '"uni-a/*": ["@example-org/uni-a-partners"]',
        '"uni-a/*": ["@example-org/uni-a-partners", mallory]',
    )
    await add_user(stack, "mallory", "read")
    number = await open_pr_as(stack, "mallory", {**CHANGE, "hubbot.yaml": grab})
    cid = await comment(stack, number, "mallory", "/deploy staging\n/deploy uni-a/staging")
    body = reply(await stack.pull(number), cid)
    assert body.count("refused: @mallory is neither a partner of any hub") == 2
    assert await deployments(stack) == []


async def test_a_redeploy_needs_write_access(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    await add_user(stack, "tess", "triage")
    main = (await stack.pull(number))["base"]["sha"]
    before = len(stack.sandbox.requests)
    cid = await comment(stack, number, "tess", f"/deploy uni-a/prod@{main[:7]}")
    body = reply(await stack.pull(number), cid)
    assert "needs write access to this repository, and @tess has `triage`" in body
    # Refused on the role alone: no compare, no snapshot.
    paths = [r.path for r in stack.sandbox.requests[before:]]
    assert not any("/compare/" in p or "/tarball/" in p for p in paths)
    assert await deployments(stack) == []


@pytest.mark.parametrize("which", ["pr-head", "unknown"])
async def test_a_redeploy_of_a_commit_not_on_the_default_branch_is_refused(
    stack: Stack, which: str
) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    head = (await stack.pull(number))["head"]["sha"]
    sha = head if which == "pr-head" else "0123456789abcdef0123456789abcdef01234567"
    cid = await comment(stack, number, "octocat", f"/deploy uni-a/prod@{sha}")
    body = reply(await stack.pull(number), cid)
    if which == "pr-head":
        assert f"`{sha}` is not a commit of the default branch `main`" in body
    else:
        assert f"`{sha}` is not a commit of this repository" in body
    assert await deployments(stack) == []


async def test_a_preview_needs_an_error_free_plan(stack: Stack) -> None:
    bad = STAGING_TEXT + "nfs:\n  enabled: maybe\n"
    number = await open_pr_as(stack, "octocat", {STAGING: bad})
    cid = await comment(stack, number, "octocat", "/deploy staging")
    body = reply(await stack.pull(number), cid)
    assert "the plan of" in body and "has errors" in body
    assert f"`{STAGING}:7`" in body
    assert await deployments(stack) == []


async def test_a_preview_of_a_hub_that_does_not_exist_is_refused(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    cid = await comment(stack, number, "octocat", "/deploy uni-a/nope-staging")
    body = reply(await stack.pull(number), cid)
    assert "there is no hub `uni-a/nope-staging` at this PR's head" in body
    assert await deployments(stack) == []


async def test_a_closed_pr_deploys_nothing(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    await stack.control("PATCH", f"/pulls/{number}", {"state": "closed"})
    await stack.settle()
    cid = await comment(stack, number, "octocat", "/deploy staging\n/plan")
    body = reply(await stack.pull(number), cid)
    assert "this pull request is closed: only an open one deploys a preview" in body
    assert "this pull request is closed: there is nothing to re-plan" in body
    assert await deployments(stack) == []


async def test_one_comment_runs_at_most_ten_commands(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    cid = await comment(stack, number, "octocat", "\n".join(["/help"] * 12))
    view = await stack.pull(number)
    body = reply(view, cid)
    assert body.count("✅ **`/help`**") == 10
    assert body.count("not run: at most 10 commands a comment") == 2
    assert reactions(view, cid) == ["eyes", "confused"]


async def test_reactions_github_refuses_never_stop_the_commands(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    fault = {"method": "POST", "path": "/reactions$", "status": 502, "times": 8}
    await stack.control("POST", "/faults", fault)
    cid = await comment(stack, number, "octocat", "/help")
    view = await stack.pull(number)
    assert "✅ **`/help`**" in reply(view, cid)
    assert reactions(view, cid) == []  # both reactions gave up after their retries
    assert (await stack.control("GET", "/faults"))[0]["times"] == 0


async def test_a_reply_whose_answer_is_lost_is_not_posted_twice(stack: Stack) -> None:
    number = await open_pr_as(stack, "octocat", CHANGE)
    # Served, but only after the client gave up waiting: whether it applied is unknown.
    fault = {"method": "POST", "path": "/issues/\\d+/comments$", "delay_seconds": 2.5, "times": 1}
    await stack.control("POST", "/faults", fault)
    before = len(stack.sandbox.requests)
    cid = await comment(stack, number, "octocat", "/help")
    calls = [(r.method, r.path) for r in stack.sandbox.requests[before:]]
    comments = f"/repos/{stack.sandbox.state.full_name}/issues/{number}/comments"
    assert calls.count(("POST", comments)) == 1 and ("GET", comments) in calls  # looked first
    view = await stack.pull(number)
    assert "✅ **`/help`**" in reply(view, cid)  # exactly one
    assert reactions(view, cid) == ["eyes", "rocket"]


async def test_a_team_partner_is_a_partner_of_the_teams_clusters_only(stack: Stack) -> None:
    team = {"org": "example-org", "slug": "ocean-lab-partners", "members": ["oscar"]}
    await stack.control("POST", "/teams", team)
    await add_user(stack, "oscar", "read")
    number = await open_pr_as(stack, "octocat", CHANGE)
    before = len(stack.sandbox.requests)
    cid = await comment(stack, number, "oscar", "/deploy staging")
    body = reply(await stack.pull(number), cid)
    assert "@oscar is a partner on `ocean-lab` only, not on `uni-a/staging`" in body
    asked = [r.path for r in stack.sandbox.requests[before:] if "/memberships/" in r.path]
    # Only the teams hubbot.yaml names, each once.
    assert sorted(asked) == [
        "/orgs/example-org/teams/ocean-lab-partners/memberships/oscar",
        "/orgs/example-org/teams/uni-a-partners/memberships/oscar",
    ]
    assert await deployments(stack) == []


async def test_a_pr_whose_plan_deploys_no_staging_hub_has_nothing_to_preview(
    stack: Stack,
) -> None:
    support = "config/clusters/uni-a/support.values.yaml"
    text = (EXAMPLE / support).read_text().replace("retention: 60d", "retention: 61d")
    number = await open_pr_as(stack, "octocat", {support: text})
    cid = await comment(stack, number, "octocat", "/deploy staging")
    body = reply(await stack.pull(number), cid)
    assert "refused: there is nothing to deploy: the plan has no staging hubs" in body
    assert await deployments(stack) == []


async def test_a_command_github_fails_under_says_so_and_later_ones_still_run(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    number = await open_pr_as(stack, "octocat", CHANGE)
    # Every read of the PR fails, past the client's retries.
    fault = {"method": "GET", "path": f"/pulls/{number}$", "status": 502, "times": 20}
    await stack.control("POST", "/faults", fault)
    cid = await comment(stack, number, "octocat", "/plan\n/help")
    await stack.control("DELETE", "/faults")
    view = await stack.pull(number)
    body = reply(view, cid)
    assert "❌ **`/plan`** failed: GitHub answered 502 Bad Gateway" in body
    assert "✅ **`/help`**" in body
    assert reactions(view, cid) == ["eyes", "confused"]
    assert "Traceback" not in caplog.text  # an expected failure, logged as a warning
    scan_for_secrets(stack, caplog.text)


async def test_no_secret_reaches_a_reply_or_the_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_user(stack, "alice-partner", "read")
    number = await open_pr_as(stack, "alice-partner", CHANGE)
    body = "/help\n/plan\n/deploy uni-a/prod@abcdef1\n/deploy ocean-lab/staging\n/unlock\n/cancel"
    await comment(stack, number, "alice-partner", body)
    await comment(stack, number, "octocat", "/deploy uni-a/prod@0123456\n/deplyo")
    scan_for_secrets(stack, caplog.text)


async def test_deploys_are_off_while_the_default_branchs_settings_are_broken(
    stack: Stack,
) -> None:
    broken = (EXAMPLE / "hubbot.yaml").read_text().replace("max_parallel: 4", "max_parallel: 0")
    await stack.control("POST", "/push", {"branch": "main", "files": {"hubbot.yaml": broken}})
    await stack.settle()
    number = await open_pr_as(stack, "octocat", CHANGE)
    main = (await stack.pull(number))["base"]["sha"]
    cid = await comment(stack, number, "octocat", f"/deploy staging\n/deploy uni-a/prod@{main}")
    body = reply(await stack.pull(number), cid)
    assert body.count("`hubbot.yaml` on the default branch has errors") == 2
    assert "`hubbot.yaml:" in body  # the finding, at its line
    assert await deployments(stack) == []
