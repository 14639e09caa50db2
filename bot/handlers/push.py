"""Deploy on merge: a push to the default branch rolls the merged change out.

Other refs, tags and deleted branches deploy nothing. A default branch that was just
created (`before` all zeros) has nothing to compare with: it is skipped, with a log line,
rather than deploying every hub. The merged PR (found from the pushed commit) supplies
the labels (`deployer:skip-deploy` and friends) and the conversation where progress is
reported; a direct push has neither, and is reported by its check run alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.deploys.merge import deploy_pushed, report_not_started
from bot.github.snapshot import RepoRef
from bot.handlers.context import PayloadError, Services
from bot.handlers.pull_requests import describe_failure

logger = logging.getLogger(__name__)

router = routing.Router()

ZERO_SHA = "0" * 40


@dataclass(frozen=True, slots=True)
class Push:
    """The parts of a `push` payload a deploy needs."""

    repo: RepoRef
    ref: str
    before: str
    after: str
    default_branch: str
    deleted: bool
    pusher: str

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Push:
        """Read a push payload; raises PayloadError."""
        try:
            repository = data["repository"]
            owner = repository["owner"]
            return cls(
                repo=RepoRef(
                    owner=str(owner.get("login") or owner["name"]),
                    name=str(repository["name"]),
                    url=str(repository["url"]),
                ),
                ref=str(data["ref"]),
                before=str(data["before"]),
                after=str(data["after"]),
                default_branch=str(repository.get("default_branch") or "main"),
                deleted=bool(data.get("deleted")),
                pusher=str((data.get("sender") or {}).get("login") or ""),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise PayloadError(f"push payload lacks {exc}") from None

    @property
    def on_default_branch(self) -> bool:
        """Whether the push moved the default branch."""
        return self.ref == f"refs/heads/{self.default_branch}"


@router.register("push")
async def deploy_push(event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services) -> None:
    """A push to the default branch: plan the pushed range and deploy it."""
    push = Push.from_payload(event.data)
    if not push.on_default_branch:
        logger.debug("push to %s: not the default branch, nothing deploys", push.ref)
        return
    if push.deleted or push.after == ZERO_SHA:
        logger.info("the default branch of %s was deleted: nothing deploys", push.repo.full_name)
        return
    if push.before == ZERO_SHA:
        logger.info(
            "the default branch of %s was created at %s: nothing to compare with, so nothing "
            "deploys (a later push deploys its own changes)",
            push.repo.full_name,
            push.after[:7],
        )
        return
    try:
        await _deploy(gh, push, services, delivery=event.delivery_id or "")
    except BaseException as exc:
        # Before its deploys are accepted nothing else would say this push deployed nothing.
        await report_not_started(
            gh, push.repo, sha=push.after, reason=describe_failure(exc), service=services.deploys
        )
        raise


async def _deploy(gh: GitHubAPI, push: Push, services: Services, *, delivery: str) -> None:
    source = f"push {push.before[:7]}..{push.after[:7]}"
    if push.pusher:
        source += f" by @{push.pusher}"
    await deploy_pushed(
        services.deploys,
        gh,
        push.repo,
        before=push.before,
        after=push.after,
        branch=push.default_branch,
        source=source,
        actor=push.pusher,
        delivery=delivery,
    )
