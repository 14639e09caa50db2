"""One plan comment per PR: found by marker, created once, edited after, recovered if deleted."""

from __future__ import annotations

import http
from typing import Any

import gidgethub
import pytest

from bot.github.client import AmbiguousWrite
from bot.github.comments import (
    MAX_COMMENT_CHARS,
    CommentCache,
    CommentRef,
    fit,
    is_ours,
    upsert_comment,
)
from tests.conftest import Answers, FakeGH

MARKER = "<!-- hubbot:plan -->"
COMMENTS = "https://api.github.com/repos/octo/infra/issues/7/comments"
LIST = COMMENTS + "?per_page=100"
KEY = ("octo/infra", 7, MARKER)


def comment(n: int, body: str, *, bot: bool = True, app: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": n,
        "url": f"https://api.github.com/repos/octo/infra/issues/comments/{n}",
        "body": body,
        "user": {"login": "hubbot[bot]" if bot else "someone", "type": "Bot" if bot else "User"},
    }
    if app is not None:
        out["performed_via_github_app"] = {"id": app}
    return out


def url(n: int) -> str:
    return f"https://api.github.com/repos/octo/infra/issues/comments/{n}"


def not_found() -> gidgethub.BadRequest:
    return gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND)


async def upsert(gh: FakeGH, cache: CommentCache, body: str) -> str:
    result = await upsert_comment(
        gh, comments_url=COMMENTS, key=KEY, body=body, cache=cache, app_id="42"
    )
    return result.outcome


async def test_first_plan_lists_then_creates_then_edits_in_place() -> None:
    gh = FakeGH(
        {
            ("GET", LIST): [[comment(1, "hello", bot=False)]],
            ("POST", COMMENTS): comment(9, MARKER + "\nv1"),
            ("PATCH", url(9)): {},
        }
    )
    cache = CommentCache()
    assert await upsert(gh, cache, MARKER + "\nv1") == "created"
    assert await upsert(gh, cache, MARKER + "\nv2") == "updated"
    assert await upsert(gh, cache, MARKER + "\nv2") == "unchanged"
    assert [(m, u) for m, u, _ in gh.calls] == [
        ("GET", LIST),
        ("POST", COMMENTS),
        ("PATCH", url(9)),
    ]
    assert gh.calls[2][2] == {"body": MARKER + "\nv2"}


async def test_after_a_restart_the_comment_is_found_by_its_marker() -> None:
    listed = [comment(1, MARKER + "\nquoted by a human", bot=False), comment(3, MARKER + "\nold")]
    gh = FakeGH({("GET", LIST): listed, ("PATCH", url(3)): {}})
    assert await upsert(gh, CommentCache(), MARKER + "\nnew") == "updated"
    assert gh.urls() == [LIST, url(3)]


async def test_an_unchanged_body_found_after_restart_costs_no_edit() -> None:
    gh = FakeGH({("GET", LIST): [comment(3, MARKER + "\nsame")]})
    assert await upsert(gh, CommentCache(), MARKER + "\nsame") == "unchanged"
    assert gh.urls() == [LIST]


async def test_a_deleted_comment_is_recreated() -> None:
    cache = CommentCache()
    cache.put(KEY, CommentRef(url(3), MARKER + "\nold"))
    gh = FakeGH(
        {
            ("PATCH", url(3)): not_found(),
            ("GET", LIST): [],
            ("POST", COMMENTS): comment(4, MARKER + "\nnew"),
        }
    )
    assert await upsert(gh, cache, MARKER + "\nnew") == "created"
    assert cache.get(KEY) == CommentRef(url(4), MARKER + "\nnew")


async def test_an_ambiguous_create_is_looked_up_before_it_is_repeated() -> None:
    created = comment(5, MARKER + "\nbody")
    gh = FakeGH(
        {
            ("GET", LIST): Answers([], [created]),
            ("POST", COMMENTS): AmbiguousWrite("POST", "/x", "timed out"),
        }
    )
    assert await upsert(gh, CommentCache(), MARKER + "\nbody") == "unchanged"
    assert [m for m, _, _ in gh.calls] == ["GET", "POST", "GET"]


async def test_a_timed_out_create_that_lands_late_is_deleted_once_it_would_have() -> None:
    # GitHub applies the timed-out POST after our lookup: two comments, until we clean up.
    gh = FakeGH(
        {
            ("GET", LIST): Answers(
                [], [], [comment(4, MARKER + "\nb"), comment(6, MARKER + "\nb")]
            ),
            ("POST", COMMENTS): Answers(
                AmbiguousWrite("POST", "/x", "timed out", settles_at=0.0),
                comment(4, MARKER + "\nb"),
            ),
            ("DELETE", url(6)): None,
        }
    )
    assert await upsert(gh, CommentCache(), MARKER + "\nb") == "created"
    assert [m for m, _, _ in gh.calls] == ["GET", "POST", "GET", "POST", "GET", "DELETE"]
    assert gh.calls[-1][1] == url(6)


async def test_giving_up_on_creating_says_what_github_answered() -> None:
    gh = FakeGH(
        {
            ("GET", LIST): [],
            ("POST", COMMENTS): AmbiguousWrite("POST", "/x", "GitHub answered 502"),
        }
    )
    with pytest.raises(AmbiguousWrite, match="GitHub answered 502"):
        await upsert(gh, CommentCache(), MARKER + "\nb")
    assert [m for m, _, _ in gh.calls] == ["GET", "POST"] * 3


async def test_duplicates_from_an_old_race_are_removed() -> None:
    gh = FakeGH(
        {
            ("GET", LIST): [comment(3, MARKER + "\na"), comment(8, MARKER + "\nb")],
            ("DELETE", url(8)): None,
            ("PATCH", url(3)): {},
        }
    )
    assert await upsert(gh, CommentCache(), MARKER + "\nc") == "updated"
    assert ("DELETE", url(8), None) in gh.calls


async def test_other_errors_propagate() -> None:
    gh = FakeGH({("GET", LIST): gidgethub.BadRequest(http.HTTPStatus.FORBIDDEN)})
    with pytest.raises(gidgethub.BadRequest):
        await upsert(gh, CommentCache(), MARKER + "\nx")


@pytest.mark.parametrize(
    ("item", "ours"),
    [
        (comment(1, MARKER + "\nx"), True),
        (comment(1, MARKER + "\nx", app=42), True),
        (comment(1, MARKER + "\nx", app=7), False),  # another app's bot using our marker
        (comment(1, MARKER + "\nx", bot=False), False),
        (comment(1, "text " + MARKER), False),
        ({"body": None}, False),
    ],
)
def test_is_ours(item: dict[str, Any], ours: bool) -> None:
    assert is_ours(item, MARKER, "42") is ours


def test_a_body_without_the_marker_gets_it_and_long_bodies_fit() -> None:
    body = fit("x" * (MAX_COMMENT_CHARS + 10))
    assert len(body) <= MAX_COMMENT_CHARS and "cut to fit" in body


async def test_marker_is_added_when_missing() -> None:
    gh = FakeGH({("GET", LIST): [], ("POST", COMMENTS): comment(1, "")})
    await upsert(gh, CommentCache(), "plain")
    assert gh.calls[-1][2] == {"body": MARKER + "\nplain"}
