"""Pull requests: re-plan on every change, keep one plan comment and a `hubbot/plan` check run.

`opened`, `synchronize`, `reopened`, `ready_for_review`, `edited` (base
changed), `labeled` and `unlabeled` re-plan; so does "Re-run" on the check.
`closed` does nothing here: deploys belong to the deploy feature.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.deploys.progress import DEPLOY_CHECK
from bot.github.auth import TokenError
from bot.github.checks import (
    PLAN_CHECK,
    CheckRun,
    annotation,
    complete_check,
    conclude_with_failure,
    start_check,
)
from bot.github.client import AmbiguousWrite, GitHubUnavailable
from bot.github.comments import upsert_comment
from bot.github.snapshot import RepoRef, SnapshotError
from bot.handlers.context import PayloadError, PlanOutcome, Services
from bot.handlers.planning import MARKER, conclusion_of

logger = logging.getLogger(__name__)

router = routing.Router()

REPLAN_ACTIONS = (
    "opened",
    "synchronize",
    "reopened",
    "ready_for_review",
    "edited",
    "labeled",
    "unlabeled",
)
REPLAN_TAG = "replan"


@dataclass(frozen=True, slots=True)
class PullRequest:
    """The parts of a PR that planning needs, taken from a payload."""

    repo: RepoRef
    number: int
    state: str
    base_ref: str
    base_sha: str
    head_sha: str
    default_branch: str
    labels: tuple[str, ...]
    comments_url: str

    @classmethod
    def from_payload(cls, pr: Mapping[str, Any], repository: Mapping[str, Any]) -> PullRequest:
        """Read a `pull_request` object and its `repository`; raises PayloadError."""
        try:
            return cls(
                repo=RepoRef(
                    owner=str(repository["owner"]["login"]),
                    name=str(repository["name"]),
                    url=str(repository["url"]),
                ),
                number=int(pr["number"]),
                state=str(pr.get("state", "open")),
                base_ref=str(pr["base"]["ref"]),
                base_sha=str(pr["base"]["sha"]),
                head_sha=str(pr["head"]["sha"]),
                default_branch=str(repository.get("default_branch") or "main"),
                labels=tuple(str(label["name"]) for label in pr.get("labels") or ()),
                comments_url=str(pr.get("comments_url") or pr["issue_url"] + "/comments"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"pull request payload lacks {exc}") from None


def coalesce_tag(event: sansio.Event) -> str | None:
    """`replan` for events that only re-plan a PR, so a newer one supersedes a queued older one."""
    action = event.data.get("action") if isinstance(event.data, Mapping) else None
    if event.event == "pull_request" and action in REPLAN_ACTIONS:
        return REPLAN_TAG
    if event.event in ("check_run", "check_suite") and action == "rerequested":
        # "Re-run" on hubbot/deploy deploys: it must never drop (or be dropped for) a re-plan.
        run = event.data.get("check_run") if event.event == "check_run" else None
        if isinstance(run, Mapping) and run.get("name") == DEPLOY_CHECK:
            return None
        return REPLAN_TAG
    return None


async def replan(event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services) -> None:
    """Re-plan the PR of a `pull_request` event."""
    data = event.data
    if data.get("action") == "edited" and "base" not in (data.get("changes") or {}):
        logger.debug("PR edited without a base change: nothing to re-plan")
        return
    pr = PullRequest.from_payload(data.get("pull_request") or {}, data.get("repository") or {})
    if pr.state != "open":
        logger.debug("PR #%s is %s: not re-planned", pr.number, pr.state)
        return
    await plan_pull_request(gh, services, pr)


for _action in REPLAN_ACTIONS:
    router.add(replan, "pull_request", action=_action)


@router.register("check_run", action="rerequested")
@router.register("check_suite", action="rerequested")
async def rerun(event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services) -> None:
    """ "Re-run" on our check (or its suite): re-plan each PR it belongs to."""
    item = event.data.get(event.event)
    if not isinstance(item, Mapping):
        raise PayloadError(f"{event.event} payload lacks its {event.event} object")
    if event.event == "check_run" and item.get("name") != PLAN_CHECK:
        return
    app = item.get("app")
    if services.app_id is not None and (
        not isinstance(app, Mapping) or str(app.get("id")) != str(services.app_id)
    ):
        return
    for ref in item.get("pull_requests") or ():
        if not isinstance(ref, Mapping) or not isinstance(ref.get("url"), str):
            raise PayloadError("a pull request of the check has no url")
        fresh = await gh.getitem(ref["url"])
        pr = PullRequest.from_payload(fresh, event.data.get("repository") or {})
        if pr.state == "open":
            await plan_pull_request(gh, services, pr)


async def plan_pull_request(
    gh: GitHubAPI, services: Services, pr: PullRequest, *, run: CheckRun | None = None
) -> None:
    """Plan a PR and publish it: the comment, and a check run that always ends concluded.

    `run`: an existing run of the head to conclude (one a stopped process left open).
    If GitHub will not create the check run at first, the plan and its comment still go
    out, and the run is created once more at the end, concluded at once.
    """
    if run is None:
        try:
            run = await start_check(gh, repo_url=pr.repo.url, head_sha=pr.head_sha)
        except gidgethub.GitHubException as exc:
            logger.warning(
                "could not start the plan check (%s): planning anyway", describe_failure(exc)
            )
    try:
        outcome = await _plan(gh, services, pr)
        await upsert_comment(
            gh,
            comments_url=pr.comments_url,
            key=(pr.repo.full_name, pr.number, MARKER),
            body=outcome.body,
            cache=services.comments,
            app_id=services.app_id,
        )
        if run is None:
            run = await start_check(gh, repo_url=pr.repo.url, head_sha=pr.head_sha)
        await complete_check(
            gh,
            run,
            conclusion=conclusion_of(outcome.findings),
            title=outcome.title,
            summary=outcome.summary,
            annotations=[annotation(f) for f in outcome.findings],
        )
    except BaseException as exc:
        if run is not None:
            await conclude_with_failure(gh, run, describe_failure(exc))
        raise


async def _plan(gh: GitHubAPI, services: Services, pr: PullRequest) -> PlanOutcome:
    reader = services.snapshots
    comparison = await reader.compare(gh, pr.repo, pr.base_sha, pr.head_sha)
    base = await reader.at_commit(gh, pr.repo, comparison.merge_base)
    # The merge base is the default branch's head when the PR targets it and is up to date.
    on_default = pr.base_ref == pr.default_branch and comparison.merge_base == pr.base_sha
    repo_settings = await services.settings.get(
        gh,
        repo=pr.repo.full_name,
        repo_url=pr.repo.url,
        default_branch=pr.default_branch,
        default_head=base if on_default else None,
    )
    head = await reader.at_head(gh, pr.repo, base, comparison)
    claims = services.deploys.claims_board(pr.repo)
    return await asyncio.to_thread(
        functools.partial(services.plan, claims=claims, pr=pr.number),
        base,
        head,
        repo_settings.settings,
        pr.labels,
        repo_settings.findings,
    )


def describe_failure(exc: BaseException) -> str:
    """Why planning stopped, in words safe to publish (never a raw message that may hold data)."""
    if isinstance(exc, asyncio.CancelledError):
        return "the bot was stopped (restart or shutdown) while planning"
    if isinstance(exc, AmbiguousWrite | GitHubUnavailable | SnapshotError | PayloadError):
        return str(exc)
    if isinstance(exc, TokenError):
        return "GitHub gave the app no installation token"
    if isinstance(exc, gidgethub.RateLimitExceeded):
        return "GitHub's rate limit is exhausted for now"
    if isinstance(exc, gidgethub.HTTPException):
        return f"GitHub answered {int(exc.status_code)} {exc.status_code.phrase}"
    return f"an internal error ({type(exc).__name__}); the bot's log has the details"
