"""Roles and team memberships from GitHub, cached briefly; reactions; who counts as a bot."""

from __future__ import annotations

import http
from typing import Any

import gidgethub
import pytest

from bot.github.permissions import PermissionCache, role_of, split_team
from bot.github.reactions import react
from bot.handlers.command_context import fresh_pull
from bot.handlers.comments import Result, is_bot, render_reply
from bot.handlers.context import PayloadError
from tests.conftest import Answers, FakeGH, sample

REPO_URL = "https://api.github.com/repos/example-org/infra"
PERMISSION = REPO_URL + "/collaborators/{}/permission"
MEMBERSHIP = "https://api.github.com/orgs/{}/teams/{}/memberships/{}"


def not_found() -> gidgethub.BadRequest:
    return gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("answer", "role"),
    [
        ({"permission": "admin", "role_name": "admin"}, "admin"),
        ({"permission": "admin", "role_name": "maintain"}, "maintain"),
        ({"permission": "write", "role_name": "write"}, "write"),
        ({"permission": "write", "role_name": "triage"}, "triage"),
        ({"permission": "read", "role_name": "read"}, "read"),
        ({"permission": "none", "role_name": "none"}, "none"),
        # An organisation's custom role carries its own name; the base permission decides.
        ({"permission": "write", "role_name": "deployer"}, "write"),
        ({"permission": "read", "role_name": "auditor"}, "read"),
        ({"permission": "owner?", "role_name": "x"}, "none"),
        ({}, "none"),
        (None, "none"),
        ("admin", "none"),
    ],
)
def test_role_of_an_answer(answer: Any, role: str) -> None:
    assert role_of(answer) == role


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("@example-org/uni-a-partners", ("example-org", "uni-a-partners")),
        ("@Org/Team", ("Org", "Team")),
        ("alice", None),
        ("@org", None),
        ("@org/", None),
        ("@/team", None),
        ("@org/a/b", None),
    ],
)
def test_split_team(name: str, parts: tuple[str, str] | None) -> None:
    assert split_team(name) == parts


async def test_roles_are_cached_briefly_and_case_insensitively() -> None:
    clock = Clock()
    gh = FakeGH(
        {("GET", PERMISSION.format("Alice")): {"permission": "write", "role_name": "maintain"}}
    )
    cache = PermissionCache(ttl=60, clock=clock)
    assert await cache.role(gh, repo_url=REPO_URL, repo="example-org/infra", login="Alice") == (
        "maintain"
    )
    # Same person, other spelling, within the minute: no call.
    assert await cache.role(gh, repo_url=REPO_URL, repo="Example-Org/Infra", login="alice") == (
        "maintain"
    )
    assert len(gh.calls) == 1
    clock.now = 61
    gh.responses[("GET", PERMISSION.format("alice"))] = {"permission": "read", "role_name": "read"}
    assert await cache.role(gh, repo_url=REPO_URL, repo="example-org/infra", login="alice") == (
        "read"
    )
    assert len(gh.calls) == 2


async def test_an_unknown_user_has_no_role_and_that_is_cached_too() -> None:
    gh = FakeGH({("GET", PERMISSION.format("ghost")): not_found()})
    cache = PermissionCache()
    for _ in range(2):
        assert await cache.role(gh, repo_url=REPO_URL, repo="o/r", login="ghost") == "none"
    assert len(gh.calls) == 1


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_other_errors_of_the_permission_api_are_not_a_role(status: int) -> None:
    error = gidgethub.BadRequest(http.HTTPStatus(status))
    gh = FakeGH({("GET", PERMISSION.format("eve")): error})
    with pytest.raises(gidgethub.BadRequest):
        await PermissionCache().role(gh, repo_url=REPO_URL, repo="o/r", login="eve")


async def test_teams_are_asked_only_of_non_writers_and_only_for_named_teams() -> None:
    teams = ["@example-org/uni-a-partners", "@example-org/ocean", "@other/team"]
    gh = FakeGH(
        {
            ("GET", PERMISSION.format("rita")): {"permission": "read", "role_name": "triage"},
            ("GET", MEMBERSHIP.format("example-org", "uni-a-partners", "rita")): {
                "state": "active",
                "role": "member",
            },
            ("GET", MEMBERSHIP.format("example-org", "ocean", "rita")): {
                "state": "pending",
                "role": "member",
            },
            ("GET", MEMBERSHIP.format("other", "team", "rita")): not_found(),
            ("GET", PERMISSION.format("wendy")): {"permission": "write", "role_name": "write"},
        }
    )
    cache = PermissionCache()
    rita = await cache.actor(gh, repo_url=REPO_URL, repo="o/r", login="rita", teams=teams)
    assert (rita.role, rita.teams) == ("triage", frozenset({"@example-org/uni-a-partners"}))
    assert len(gh.calls) == 4
    await cache.actor(gh, repo_url=REPO_URL, repo="o/r", login="RITA", teams=teams)
    assert len(gh.calls) == 4  # all cached
    wendy = await cache.actor(gh, repo_url=REPO_URL, repo="o/r", login="wendy", teams=teams)
    assert wendy.can_write and wendy.teams == frozenset()
    assert gh.urls()[-1] == PERMISSION.format("wendy")  # no membership asked


async def test_a_team_github_will_not_tell_about_counts_as_not_a_member() -> None:
    forbidden = gidgethub.BadRequest(http.HTTPStatus.FORBIDDEN)
    gh = FakeGH({("GET", MEMBERSHIP.format("org", "t", "bob")): forbidden})
    assert not await PermissionCache().is_member(gh, team="@org/t", login="bob")
    invalid = gidgethub.BadRequest(http.HTTPStatus.UNPROCESSABLE_ENTITY)
    gh = FakeGH({("GET", MEMBERSHIP.format("org", "t", "bob")): invalid})
    with pytest.raises(gidgethub.BadRequest):
        await PermissionCache().is_member(gh, team="@org/t", login="bob")


async def test_reactions_are_posted_retry_safe_and_a_deleted_comment_is_no_error() -> None:
    url = REPO_URL + "/issues/comments/7"
    gh = FakeGH({("POST", url + "/reactions"): Answers({"content": "eyes"}, not_found())})
    assert await react(gh, url, "eyes") is True
    assert gh.calls == [("POST", url + "/reactions", {"content": "eyes"})]
    assert await react(gh, url, "rocket") is False
    with pytest.raises(ValueError):
        await react(gh, url, "thumbs")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "app", "expected"),
    [
        ({"login": "alice", "type": "User"}, None, False),
        ({"login": "hubbot[bot]", "type": "Bot"}, None, True),
        ({"login": "renovate[bot]", "type": "User"}, None, True),
        ({"login": "ci", "type": "Bot"}, None, True),
        ({"login": "alice", "type": "User"}, {"id": 31337}, True),  # made via our app
        ({"login": "alice", "type": "User"}, {"id": 1}, False),
    ],
)
def test_who_is_a_bot(user: dict[str, str], app: Any, expected: bool) -> None:
    assert is_bot({"user": user, "performed_via_github_app": app}, "31337") is expected


def test_a_fresh_pull_knows_forks_and_its_author() -> None:
    data = sample("pull_request", "opened")
    pr, repository = data["pull_request"], data["repository"]
    fresh = fresh_pull(pr, repository)
    assert fresh.author == pr["user"]["login"] and fresh.open
    assert pr["head"]["repo"]["id"] == pr["base"]["repo"]["id"] and not fresh.fork
    # A PR inside a repository that is itself a fork is not a fork PR.
    pr["head"]["repo"] = dict(pr["head"]["repo"], fork=True)
    pr["base"]["repo"] = dict(pr["base"]["repo"], fork=True)
    assert not fresh_pull(pr, repository).fork
    pr["head"]["repo"] = dict(pr["head"]["repo"], id=99, full_name="someone/fork")
    assert fresh_pull(pr, repository).fork
    pr["head"]["repo"] = None  # the fork was deleted
    assert fresh_pull(pr, repository).fork
    del pr["user"]
    with pytest.raises(PayloadError):
        fresh_pull(pr, repository)


def test_the_reply_lists_each_line_in_order_with_its_outcome() -> None:
    body = render_reply(
        "alice",
        [
            Result(1, "/plan", "ok", "re-planned"),
            Result(2, "/deploy staging", "refused", "no"),
            Result(3, "/deplyo", "unknown", "`/deplyo` is not a hubbot command"),
            Result(4, "/help", "ok", "\n\n| table |"),
        ],
    )
    assert body.split("\n\n") == [
        "@alice",
        "✅ **`/plan`** re-planned",
        "🚫 **`/deploy staging`** refused: no",
        "❓ **`/deplyo`** `/deplyo` is not a hubbot command",
        "✅ **`/help`**",
        "| table |",
    ]
