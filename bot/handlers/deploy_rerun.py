""" "Re-run" on a `hubbot/deploy` check run: deploy again what failed at that commit.

GitHub shows "Re-run" on every completed check run of an app that subscribes to
`check_run`. On `hubbot/deploy` it redeploys the targets of the check's commit whose
newest hubbot Deployment (previews aside) ended `failure` or `error`: hubbot's failed,
errored, cancelled and blocked targets. As `/deploy <cluster>/<hub>@<sha>`, it needs
write access; and the commit must still be the default branch's head, so a re-run never
rolls a hub back. The targets go through the deploy service as a redeploy: support
first and the staging to prod gate apply as for a merge, with a progress comment on the
merged PR and a new `hubbot/deploy` check run. A refusal, or nothing to re-run, is said
on the merged PR (or logged when the commit has none).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gidgethub
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.core.permissions import may_redeploy
from bot.deploys.merge import current_head
from bot.deploys.progress import DEPLOY_CHECK
from bot.deploys.schedule import Stage, Step
from bot.github.client import AmbiguousWrite
from bot.github.comments import find_comment, fit
from bot.github.deployments import IN_FLIGHT, Listed, latest_state, list_hubbot
from bot.github.pulls import MergedPull, merged_pull_at
from bot.github.snapshot import RepoRef
from bot.handlers.context import PayloadError, Services

logger = logging.getLogger(__name__)

router = routing.Router()

FAILED = frozenset({"failure", "error"})  # what hubbot's failed, blocked, cancelled map to
STAGES: dict[str, Stage] = {"support": "support", "staging": "staging", "prod": "prod"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
READS_AT_ONCE = 4  # status reads in flight: GitHub asks integrators not to burst
MARKER = "<!-- hubbot:deploy-rerun {key} -->"
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class ReRun:
    """A "Re-run" of a `hubbot/deploy` check run: whose, on which commit of which repository."""

    repo: RepoRef
    default_branch: str
    sha: str
    run_id: int
    sender: str

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ReRun:
        """Read a `check_run` `rerequested` payload; raises PayloadError."""
        try:
            run, repository = data["check_run"], data["repository"]
            sha = str(run["head_sha"])
            request = cls(
                repo=RepoRef(
                    owner=str(repository["owner"]["login"]),
                    name=str(repository["name"]),
                    url=str(repository["url"]),
                ),
                default_branch=str(repository.get("default_branch") or "main"),
                sha=sha,
                run_id=int(run["id"]),
                sender=str(data["sender"]["login"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PayloadError(f"check_run payload lacks {exc}") from None
        if not _SHA.fullmatch(sha):
            raise PayloadError("check_run payload has no full head_sha")
        return request


def is_ours(item: Mapping[str, Any], app_id: str | None) -> bool:
    """Whether a check run (or suite) belongs to this app (any app when the id is unknown)."""
    app = item.get("app")
    return app_id is None or (isinstance(app, Mapping) and str(app.get("id")) == str(app_id))


@router.register("check_run", action="rerequested")
async def rerun_deploy(event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services) -> None:
    """ "Re-run" on our `hubbot/deploy` check: redeploy the commit's failed targets."""
    item = event.data.get("check_run")
    if not isinstance(item, Mapping):
        raise PayloadError("check_run payload lacks its check_run object")
    if item.get("name") != DEPLOY_CHECK or not is_ours(item, services.app_id):
        return
    request = ReRun.from_payload(event.data)
    services.deploys.default_branch_is(request.repo, request.default_branch)
    merged = await merged_pull_at(gh, request.repo, request.sha, request.default_branch)
    answer = await redeploy_failed(gh, services, request, merged, delivery=event.delivery_id or "")
    if answer is not None:
        await tell(gh, services, request, merged, answer, key=event.delivery_id or "")


async def redeploy_failed(
    gh: GitHubAPI,
    services: Services,
    request: ReRun,
    merged: MergedPull | None,
    *,
    delivery: str = "",
) -> str | None:
    """Queue the commit's failed targets again; None when queued, else why nothing was."""
    actor = await services.permissions.actor(
        gh, repo_url=request.repo.url, repo=request.repo.full_name, login=request.sender
    )
    decision = may_redeploy(actor)
    if not decision.allowed:
        return f"a re-run redeploys, so it is refused: {decision.reason}. Nothing was deployed."
    short, branch = request.sha[:7], request.default_branch
    head = await current_head(gh, request.repo, branch)
    if head is None:
        return f"the head of `{branch}` could not be read, so nothing was deployed; try again."
    if head != request.sha:
        return (
            f"`{short}` is no longer the head of `{branch}` (now `{head[:7]}`), and a re-run "
            "never rolls a hub back, so nothing was deployed. To deploy this commit again, "
            f"comment `/deploy <cluster>/<hub>@{short}` (write access needed)."
        )
    found = await failed_steps(gh, services, request)
    if not found.environments:
        return (
            f"hubbot deployed nothing at `{short}` (its check says why: errors, or nothing to "
            "deploy), so there is nothing to re-run, and nothing was deployed."
        )
    steps = found.steps
    if not steps:
        busy = f" ({_names(found.busy)} still deploying)" if found.busy else ""
        return f"no target of `{short}` failed{busy}: nothing to re-run, nothing was deployed."
    settings = await services.deploys.default_settings(gh, request.repo)
    source = f"re-run of {DEPLOY_CHECK} by @{request.sender}"
    if merged is not None:
        source += f" (merge of #{merged.number})"
    await services.deploys.submit(
        services.deploys.context(gh, request.repo, settings),
        steps,
        settings,
        kind="redeploy",
        sha=request.sha,
        actor=request.sender,
        pr=merged.number if merged else None,
        comments_url=merged.comments_url if merged else None,
        source=source,
        delivery=delivery,
    )
    logger.info(
        "%s: re-run of %s at %s by @%s queued %s",
        request.repo.full_name,
        DEPLOY_CHECK,
        short,
        request.sender,
        ", ".join(s.key for s in steps),
    )
    return None


@dataclass(frozen=True, slots=True)
class Found:
    """What the commit's Deployments say: the steps to deploy again, and the rest."""

    steps: list[Step]  # whose newest non-preview Deployment failed
    busy: list[str]  # targets still deploying
    environments: int  # environments hubbot deployed (not previewed) at the commit


async def failed_steps(gh: GitHubAPI, services: Services, request: ReRun) -> Found:
    """The steps whose newest non-preview Deployment at the commit failed, and those in flight.

    One listing call, then one status read per environment (its newest Deployment only).
    Targets this process is deploying at the commit count as in flight, even before
    their Deployment reaches GitHub.
    """
    busy = _in_flight(services, request)
    newest: dict[str, Listed] = {}
    listed = await list_hubbot(gh, request.repo.url, since=EPOCH, sha=request.sha, with_state=False)
    for item in listed:  # newest first
        if item.payload.get("kind") != "preview" and item.ref.sha == request.sha:
            newest.setdefault(item.ref.environment, item)
    candidates = [item for env, item in newest.items() if env not in busy]
    limit = asyncio.Semaphore(READS_AT_ONCE)

    async def state_of(item: Listed) -> str | None:
        async with limit:
            return await latest_state(gh, item.ref)

    states = await asyncio.gather(*(state_of(item) for item in candidates))
    steps = []
    for item, state in zip(candidates, states, strict=True):
        if state in FAILED:
            step = step_of(item.payload)
            if step is None:
                logger.warning("deployment %s has no readable target: skipped", item.ref.id)
            else:
                steps.append(step)
        elif state in IN_FLIGHT:
            busy.add(item.ref.environment)
    return Found(sorted(steps, key=lambda s: s.key), sorted(busy), len(newest.keys() | busy))


def step_of(payload: Mapping[str, Any]) -> Step | None:
    """The step a Deployment's `payload["hubbot"]` describes (None when it is malformed)."""
    cluster, hub, stage = payload.get("cluster"), payload.get("hub"), payload.get("stage")
    if not isinstance(cluster, str) or not cluster or not isinstance(stage, str):
        return None
    if stage not in STAGES or (hub is None) != (stage == "support"):
        return None
    if hub is not None and (not isinstance(hub, str) or not hub):
        return None
    return Step(cluster, hub, STAGES[stage], reasons=("re-run",))


def _in_flight(services: Services, request: ReRun) -> set[str]:
    """Targets this process is deploying at the commit (their Deployment may be unwritten)."""
    ctx = services.deploys.repos.get(request.repo.full_name)
    if ctx is None:
        return set()
    return {r.key for r in ctx.reporter.records.values() if r.sha == request.sha and not r.done}


async def tell(
    gh: GitHubAPI,
    services: Services,
    request: ReRun,
    merged: MergedPull | None,
    text: str,
    *,
    key: str = "",
) -> None:
    """Say why nothing was deployed: on the merged PR, mentioning the sender; else in the log."""
    what = f"Re-run of `{DEPLOY_CHECK}` on `{request.sha[:7]}`"
    if merged is None:
        logger.warning("%s: %s by @%s: %s", request.repo.full_name, what, request.sender, text)
        return
    marker = MARKER.format(key=key or request.run_id)
    body = fit(f"{marker}\n@{request.sender} **{what}**: {text}")
    for _attempt in range(3):
        try:
            await gh.post(merged.comments_url, data={"body": body})
            return
        except AmbiguousWrite:
            logger.warning("posting the re-run answer may have failed; looking before retrying")
        if await find_comment(gh, merged.comments_url, marker, services.app_id):
            return
    raise gidgethub.GitHubException("could not post the answer to a re-run")


def _names(keys: Sequence[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)
