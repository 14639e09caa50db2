"""The comment handler through the merged router, with the recording GitHub fake.

The end-to-end modules show what a PR ends up with; these pin the order of calls
(👀 before any work, the reply before 🚀/😕) and what a malformed payload does.
"""

from __future__ import annotations

from typing import Any

import pytest
from gidgethub import sansio

from bot.handlers.context import PayloadError, Services
from bot.handlers.router import router
from tests.conftest import FakeGH, sample

API = "https://api.github.com/repos/Codertocat/Hello-World"


def comment_event(body: str, *, pr: bool = True, user_type: str = "User") -> sansio.Event:
    data: dict[str, Any] = sample("issue_comment", "created")
    data["comment"]["body"] = body
    data["comment"]["user"]["type"] = user_type
    if pr:
        data["issue"]["pull_request"] = {"url": f"{API}/pulls/{data['issue']['number']}"}
    return sansio.Event(data, event="issue_comment", delivery_id="d-1")


def world(event: sansio.Event) -> tuple[FakeGH, str, str]:
    comment_url = event.data["comment"]["url"]
    comments_url = event.data["issue"]["comments_url"]
    gh = FakeGH(
        {
            ("GET", comments_url + "?per_page=100"): [],
            ("POST", comment_url + "/reactions"): {"content": "eyes"},
            ("POST", comments_url): {"url": comments_url + "/1"},
        }
    )
    return gh, comment_url, comments_url


def without_lookup(calls: list[Any]) -> list[Any]:
    """The calls after the look for an earlier answer (which every command comment makes)."""
    assert calls[0][:2] == ("GET", calls[0][1]) and calls[0][1].endswith("/comments?per_page=100")
    return calls[1:]


async def test_help_reacts_seen_then_replies_then_reacts_done() -> None:
    event = comment_event("/help")
    gh, comment_url, comments_url = world(event)
    await router.dispatch(event, gh, services=Services(app_id="1"))
    calls = without_lookup([(m, u, d) for m, u, d in gh.calls])
    assert [(m, u) for m, u, _ in calls] == [
        ("POST", comment_url + "/reactions"),
        ("POST", comments_url),
        ("POST", comment_url + "/reactions"),
    ]
    assert calls[0][2] == {"content": "eyes"} and calls[2][2] == {"content": "rocket"}
    marker = f"<!-- hubbot:reply {event.data['comment']['id']} -->"
    assert calls[1][2]["body"].startswith(marker + "\n@Codertocat")


async def test_only_unknown_lines_reply_and_react_confused_without_eyes() -> None:
    event = comment_event("/halp")
    gh, comment_url, comments_url = world(event)
    await router.dispatch(event, gh, services=Services(app_id="1"))
    assert [(m, u, (d or {}).get("content")) for m, u, d in without_lookup(gh.calls)] == [
        ("POST", comments_url, None),
        ("POST", comment_url + "/reactions", "confused"),
    ]


@pytest.mark.parametrize(
    ("body", "pr", "user_type"),
    [
        ("/help", False, "User"),  # a plain issue
        ("/help", True, "Bot"),
        ("> /help", True, "User"),
        ("nothing to see", True, "User"),
    ],
)
async def test_nothing_is_called_for_comments_without_work(
    body: str, pr: bool, user_type: str
) -> None:
    event = comment_event(body, pr=pr, user_type=user_type)
    gh = FakeGH()
    await router.dispatch(event, gh, services=Services(app_id="1"))
    assert gh.calls == []


async def test_a_payload_without_what_commands_need_is_a_payload_error() -> None:
    event = comment_event("/help")
    del event.data["comment"]["user"]
    with pytest.raises(PayloadError):
        await router.dispatch(event, FakeGH(), services=Services(app_id="1"))
    event = comment_event("/help")
    event.data["comment"] = "text"
    with pytest.raises(PayloadError):
        await router.dispatch(event, FakeGH(), services=Services(app_id="1"))


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_edits_and_deletions_are_not_routed(action: str) -> None:
    event = comment_event("/help")
    event.data["action"] = action
    assert not router.fetch(event)
    event.data["action"] = "created"
    assert router.fetch(event)  # the same payload, created, is routed


async def test_a_comment_answered_already_runs_nothing_again() -> None:
    # A redelivery after a restart, or a replay under a new delivery id (GitHub signs the
    # body only), finds the earlier answer and runs nothing.
    event = comment_event("/deploy uni-a/prod@abcdef1")
    gh, _, comments_url = world(event)
    marker = f"<!-- hubbot:reply {event.data['comment']['id']} -->"
    gh.responses[("GET", comments_url + "?per_page=100")] = [
        {"body": marker + "\nanswered", "performed_via_github_app": {"id": 1}, "url": "u"}
    ]
    await router.dispatch(event, gh, services=Services(app_id="1"))
    assert [m for m, _, _ in gh.calls] == ["GET"]
