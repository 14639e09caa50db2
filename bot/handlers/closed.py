"""A closed PR (merged or not) releases its staging claims and cancels its queued previews.

Its preview Deployments get an `inactive` status, so the claims derived from GitHub no
longer name it. A preview already running is left to finish (stopping helm midway is
worse); the reporter marks it `inactive` as soon as it ends.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.handlers.context import Services
from bot.handlers.pull_requests import PullRequest

logger = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="closed")
async def release_closed(
    event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services
) -> None:
    """Release the claims of a closed PR and cancel its queued previews."""
    data = event.data
    raw = data.get("pull_request") or {}
    pr = PullRequest.from_payload(raw, data.get("repository") or {})
    actor = str((data.get("sender") or {}).get("login") or "")
    why = "merged" if raw.get("merged") else "closed"
    deploys = services.deploys
    deploys.default_branch_is(pr.repo, pr.default_branch)
    cancelled = await deploys.cancel_pr(pr.repo, pr.number, actor=actor, running=False)
    released = await deploys.release_claims(
        gh,
        pr.repo,
        pr=pr.number,
        environments=None,
        reason=f"claim released: PR #{pr.number} {why}",
    )
    if cancelled or released:
        logger.info(
            "PR #%s %s: %d queued preview(s) cancelled, %d claim(s) released",
            pr.number,
            why,
            len(cancelled),
            len(released),
        )
