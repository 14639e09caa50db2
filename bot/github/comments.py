"""One bot comment per PR, found by its marker, created once and edited after.

The comment's id is remembered in memory (with the body last written, so an
unchanged body costs no call); after a restart it is found again by listing the
PR's comments. If it was deleted, the edit answers 404 and we find or create
it again. Creating is not safe to repeat blindly: after an ambiguous failure we
list first, and only create if our comment is not there; once the lost create
would have landed, a late copy of it is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cachetools
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.github.client import AmbiguousWrite, wait_for_late_writes

logger = logging.getLogger(__name__)

# GitHub rejects issue comments over 65,536 characters.
MAX_COMMENT_CHARS = 65536
_TRUNCATED = "\n\n_(cut to fit GitHub's comment size limit)_\n"

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class CommentRef:
    """A comment we wrote: its API URL and the body it holds."""

    url: str
    body: str


@dataclass(frozen=True, slots=True)
class Upsert:
    """What `upsert_comment` did."""

    outcome: Outcome
    url: str


class CommentCache:
    """The last known plan comment of each PR, keyed by (repo, number, marker)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._cache: cachetools.LRUCache[tuple[str, int, str], CommentRef] = cachetools.LRUCache(
            maxsize
        )

    def get(self, key: tuple[str, int, str]) -> CommentRef | None:
        """The cached comment, if any."""
        return self._cache.get(key)

    def put(self, key: tuple[str, int, str], ref: CommentRef) -> None:
        """Remember a comment."""
        self._cache[key] = ref

    def drop(self, key: tuple[str, int, str]) -> None:
        """Forget a comment (it was deleted)."""
        self._cache.pop(key, None)


def fit(body: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """`body` cut to GitHub's limit with a note, if it is too long."""
    if len(body) <= limit:
        return body
    return body[: limit - len(_TRUNCATED)] + _TRUNCATED


def is_ours(comment: Mapping[str, Any], marker: str, app_id: str | None) -> bool:
    """Whether a listed comment is the bot's comment with this marker."""
    body = comment.get("body")
    if not isinstance(body, str) or not body.startswith(marker):
        return False
    app = comment.get("performed_via_github_app")
    if isinstance(app, Mapping) and app_id is not None and "id" in app:
        return str(app["id"]) == str(app_id)
    user = comment.get("user")
    return isinstance(user, Mapping) and user.get("type") == "Bot"


async def find_comment(
    gh: GitHubAPI, comments_url: str, marker: str, app_id: str | None
) -> list[Mapping[str, Any]]:
    """The bot's comments with this marker on an issue or PR, oldest first (all pages)."""
    found = []
    async for comment in gh.getiter(f"{comments_url}{{?per_page}}", {"per_page": 100}):
        if isinstance(comment, Mapping) and is_ours(comment, marker, app_id):
            found.append(comment)
    return found


async def upsert_comment(
    gh: GitHubAPI,
    *,
    comments_url: str,
    key: tuple[str, int, str],
    body: str,
    cache: CommentCache,
    app_id: str | None = None,
) -> Upsert:
    """Make the PR's comment with marker `key[2]` say `body`, with the fewest calls."""
    marker = key[2]
    body = fit(body if body.startswith(marker) else f"{marker}\n{body}")
    known = cache.get(key)
    if known is not None:
        if known.body == body:
            return Upsert("unchanged", known.url)
        if await _edit(gh, known.url, body):
            cache.put(key, CommentRef(known.url, body))
            return Upsert("updated", known.url)
        cache.drop(key)
    lost: list[float] = []  # when ambiguous creates will have landed or been dropped
    done = await _find_or_create(gh, comments_url, key, body, cache, app_id, lost)
    if lost:
        await _delete_late_copies(gh, comments_url, key[2], app_id, keep=done.url, at=max(lost))
    return done


async def _delete_late_copies(
    gh: GitHubAPI, comments_url: str, marker: str, app_id: str | None, *, keep: str, at: float
) -> None:
    await wait_for_late_writes(gh, at)
    for comment in await find_comment(gh, comments_url, marker, app_id):
        if str(comment.get("url")) != keep:
            logger.info("deleting a copy of the comment created late by a timed-out request")
            await _delete(gh, str(comment["url"]))


async def _find_or_create(
    gh: GitHubAPI,
    comments_url: str,
    key: tuple[str, int, str],
    body: str,
    cache: CommentCache,
    app_id: str | None,
    lost: list[float],
) -> Upsert:
    failure: AmbiguousWrite | None = None
    for _attempt in range(3):
        existing = await find_comment(gh, comments_url, key[2], app_id)
        if existing:
            first, extra = existing[0], existing[1:]
            url = str(first["url"])
            for duplicate in extra:  # left by an earlier race; one comment per PR
                await _delete(gh, str(duplicate["url"]))
            if first.get("body") == body:
                cache.put(key, CommentRef(url, body))
                return Upsert("unchanged", url)
            if await _edit(gh, url, body):
                cache.put(key, CommentRef(url, body))
                return Upsert("updated", url)
            continue  # deleted between the list and the edit
        try:
            created = await gh.post(comments_url, data={"body": body})
        except AmbiguousWrite as exc:
            logger.warning("creating the comment may have failed; looking before retrying")
            if exc.settles_at is not None:
                lost.append(exc.settles_at)
            failure = exc
            continue
        url = str(created["url"])
        cache.put(key, CommentRef(url, body))
        return Upsert("created", url)
    if failure is not None:
        raise failure  # what GitHub answered says more than "could not"
    raise gidgethub.GitHubException("could not create or find the plan comment")


async def _edit(gh: GitHubAPI, url: str, body: str) -> bool:
    """PATCH a comment's body; False if the comment no longer exists."""
    try:
        await gh.patch(url, data={"body": body})
    except gidgethub.BadRequest as exc:
        if exc.status_code in (404, 410):
            return False
        raise
    return True


async def _delete(gh: GitHubAPI, url: str) -> None:
    try:
        await gh.delete(url)
    except gidgethub.BadRequest as exc:
        if exc.status_code not in (404, 410):
            raise
