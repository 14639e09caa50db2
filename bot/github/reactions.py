"""Reactions on issue comments: how the bot says "seen" (👀), "done" (🚀) or "no" (😕).

`POST /repos/{o}/{r}/issues/comments/{id}/reactions` answers 201 for a new reaction
and 200 for one the bot already left
(https://docs.github.com/en/rest/reactions/reactions#create-reaction-for-an-issue-comment),
so repeating it is harmless and it may be retried like a GET.
"""

from __future__ import annotations

import logging
from typing import Literal

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.github.client import RETRY_SAFE

logger = logging.getLogger(__name__)

Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
REACTIONS: frozenset[str] = frozenset(
    {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
)
SEEN: Reaction = "eyes"
DONE: Reaction = "rocket"
FAILED: Reaction = "confused"


async def react(gh: GitHubAPI, comment_url: str, content: Reaction) -> bool:
    """Add `content` to the comment at `comment_url`; False if the comment is gone (404/410)."""
    if content not in REACTIONS:
        raise ValueError(f"{content!r} is not a GitHub reaction")
    try:
        await gh.post(
            f"{comment_url}/reactions", data={"content": content}, extra_headers=dict(RETRY_SAFE)
        )
    except gidgethub.BadRequest as exc:
        if exc.status_code in (404, 410):
            logger.debug("the comment was deleted before the %s reaction", content)
            return False
        raise
    return True
