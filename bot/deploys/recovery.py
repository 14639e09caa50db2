"""Start-up recovery: nothing hubbot accepted is lost to a restart.

For every repository of every installation, hubbot's recent Deployments whose latest
status is still `queued` or `in_progress` (or that have none yet) were accepted by an
earlier process and never reported as ended. With the Kubernetes executor, those whose
Job still exists are adopted: the job is followed, not started again, and its real end
is reported. The others are requeued on their existing Deployment: a `queued` one says
it was requeued, an `in_progress` one (a local deploy the restart cut) says it is
deployed again. Previews of PRs closed meanwhile are not resumed; they become `inactive`.
Then a push to the default branch acknowledged but lost before its Deployments existed is
deployed (`bot.deploys.missed`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.core.planner import settings_of
from bot.core.settings import Settings
from bot.deploys.executor import DeployJob, DeployResult, Outcome
from bot.deploys.kubeapi import KubeApiError
from bot.deploys.missed import recover_missed
from bot.deploys.progress import DEPLOY_CHECK, Kind
from bot.deploys.repo import RepoDeploys
from bot.deploys.schedule import STAGES, Step
from bot.github.checks import now_iso
from bot.github.deployments import IN_FLIGHT, DeploymentRef, Listed, list_hubbot, set_status
from bot.github.installations import installed_repositories
from bot.github.snapshot import RepoRef, SnapshotError

if TYPE_CHECKING:
    from bot.deploys.service import DeployService

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)  # older accepted deploys are not resumed
MAX_LISTED = 300  # deployments looked at per repository (each costs a status call)
FAILURES = (gidgethub.GitHubException, SnapshotError, aiohttp.ClientError, TimeoutError)


async def recover_all(service: DeployService) -> None:
    """Recover every repository the app is installed on; the outcome is in `service.recovery`."""
    github = service.github
    if github is None:
        service.recovery.update(state="skipped", detail="no GitHub client")
        return
    service.recovery.update(state="running", detail="")
    problems = []
    try:
        async for gh, item in installed_repositories(github):
            repo = RepoRef(str(item["owner"]["login"]), str(item["name"]), str(item["url"]))
            branch = str(item.get("default_branch") or "main")
            service.default_branch_is(repo, branch)
            try:
                await recover_repo(service, gh, repo)
                await recover_missed(service, gh, repo, branch, since=datetime.now(UTC) - WINDOW)
                await service.claims(gh, repo)  # the plan comments show claims from here
            except (*FAILURES, KubeApiError) as exc:
                logger.error("recovery of %s failed: %s", repo.full_name, exc)
                problems.append(f"{repo.full_name}: {type(exc).__name__}")
    except FAILURES as exc:
        logger.error("recovery could not list the app's repositories: %s", exc)
        service.recovery.update(
            state="failed", detail=f"listing repositories: {type(exc).__name__}"
        )
        return
    detail = "; ".join(problems)
    service.recovery.update(state="done" if not problems else "partial", detail=detail)


async def recover_repo(service: DeployService, gh: GitHubAPI, repo: RepoRef) -> None:
    """Adopt or requeue one repository's accepted, unfinished deploys."""
    since = datetime.now(UTC) - WINDOW
    listed = await list_hubbot(gh, repo.url, since=since, max_items=MAX_LISTED)
    in_flight = [d for d in reversed(listed) if d.state is None or d.state in IN_FLIGHT]
    if not in_flight:
        return
    settings = await service.default_settings(gh, repo)
    ctx = service.context(gh, repo, settings)
    for sha in dict.fromkeys(item.ref.sha for item in in_flight):
        await _conclude_stale_checks(gh, repo, sha)
    jobs = {job.labels.get("attempt"): job for job in await ctx.executor.recover()}
    groups: dict[tuple[str, str, int | None, str], list[Listed]] = {}
    for item in in_flight:
        job = jobs.get(str(item.payload.get("attempt")))
        if job is not None:
            await _adopt(service, ctx, item, job, settings)
            continue
        key = (_kind(item.payload), item.ref.sha, _pr(item.payload), str(item.payload.get("actor")))
        groups.setdefault(key, []).append(item)
    for (kind, sha, pr, actor), items in groups.items():  # oldest first: newer SHAs coalesce
        await _requeue(service, ctx, gh, items, kind=kind, sha=sha, pr=pr, actor=actor)


async def _adopt(
    service: DeployService, ctx: RepoDeploys, item: Listed, job: DeployJob, settings: Settings
) -> None:
    step = _step(item)
    if step is None:
        return
    kind = _kind(item.payload)
    origin = ctx.reporter.new_origin(
        **_origin_fields(ctx.repo, item.payload, kind, item.ref.sha), asked=frozenset({step.key})
    )
    await ctx.rollout.adopt(step, job, source="adopted after a restart")
    wave = next(w for w in ctx.rollout.schedule.waves() if w.stream == f"adopted:{job.id}")
    step = wave.steps[step.key]
    ctx.wave_settings[wave.id] = settings
    ctx.reporter.adopt(step, item.ref, origin, str(item.payload.get("attempt")))
    service.recovery["adopted"] += 1
    logger.info("adopted the running deploy of %s (Job of %s)", step.key, job.id)


async def _requeue(
    service: DeployService,
    ctx: RepoDeploys,
    gh: GitHubAPI,
    items: list[Listed],
    *,
    kind: str,
    sha: str,
    pr: int | None,
    actor: str,
) -> None:
    if kind == "preview" and pr is not None and not await _open(gh, ctx.repo, pr):
        for item in items:
            await set_status(gh, item.ref, "inactive", description="not resumed: the PR is closed")
        return
    reuse: dict[str, tuple[DeploymentRef, str]] = {}
    steps: dict[str, Step] = {}
    for item in items:  # oldest first: a newer duplicate replaces an older one
        step = _step(item)
        if step is None:
            continue
        if step.key in reuse:
            older = reuse[step.key][0]
            await set_status(gh, older, "inactive", description="superseded by a newer deploy")
        steps[step.key] = step
        reuse[step.key] = (item.ref, item.state or "queued")
    if kind == "merge":
        settings, _ = settings_of(await service.snapshots.at_commit(gh, ctx.repo, sha))
    else:
        settings = ctx.settings
    fields = _origin_fields(ctx.repo, items[-1].payload, _kind(items[-1].payload), sha)
    await service.submit(
        ctx,
        list(steps.values()),
        settings,
        kind=fields["kind"],
        sha=sha,
        actor=actor,
        pr=fields["pr"],
        pr_author=fields["pr_author"],
        comments_url=fields["comments_url"],
        source=f"{fields['source']} (resumed after hubbot restarted)".strip(),
        reuse=reuse,
    )
    service.recovery["requeued"] += len(steps)
    logger.info("requeued %d deploy(s) of %s at %s", len(steps), ctx.repo.full_name, sha[:7])


async def _conclude_stale_checks(gh: GitHubAPI, repo: RepoRef, sha: str) -> None:
    """`hubbot/deploy` runs an earlier process left open (it was killed): conclude them."""
    data = await gh.getitem(
        f"{repo.url}/commits/{sha}/check-runs{{?check_name,filter}}",
        {"check_name": DEPLOY_CHECK, "filter": "all"},
    )
    for run in data.get("check_runs", []) if isinstance(data, Mapping) else []:
        if run.get("status") == "completed":
            continue
        summary = (
            "hubbot stopped before these deploys finished. It resumed them when it started "
            "again: a new `hubbot/deploy` run on this commit reports how they end."
        )
        await gh.patch(
            str(run["url"]),
            data={
                "status": "completed",
                "conclusion": "cancelled",
                "completed_at": now_iso(),
                "output": {"title": "hubbot restarted; the deploy resumed", "summary": summary},
            },
        )


async def _open(gh: GitHubAPI, repo: RepoRef, pr: int) -> bool:
    try:
        pull = await gh.getitem(f"{repo.url}/pulls/{pr}")
    except gidgethub.BadRequest as exc:
        if exc.status_code == 404:
            return False
        raise
    return bool(pull.get("state") == "open")


def _step(item: Listed) -> Step | None:
    p = item.payload
    cluster, hub, stage = p.get("cluster"), p.get("hub"), p.get("stage")
    if not isinstance(cluster, str) or stage not in STAGES or not isinstance(hub, str | None):
        logger.warning("deployment %s has an unreadable hubbot payload; not resumed", item.ref.id)
        return None
    return Step(cluster, hub, stage, sha=item.ref.sha, reasons=("resumed after a restart",))


def _kind(payload: Mapping[str, Any]) -> Kind:
    kind = payload.get("kind")
    if kind == "preview" or (kind is None and "pr" in payload):
        return "preview"
    return "redeploy" if kind == "redeploy" else "merge"


def _pr(payload: Mapping[str, Any]) -> int | None:
    pr = payload.get("pr", payload.get("requested_in"))
    return pr if isinstance(pr, int) and not isinstance(pr, bool) else None


def _origin_fields(
    repo: RepoRef, payload: Mapping[str, Any], kind: Kind, sha: str
) -> dict[str, Any]:
    pr = _pr(payload)
    return {
        "kind": kind,
        "sha": sha,
        "actor": str(payload.get("actor") or ""),
        "pr": pr,
        "pr_author": str(payload.get("pr_author") or ""),
        "comments_url": f"{repo.url}/issues/{pr}/comments" if pr is not None else None,
        "source": str(payload.get("source") or ""),
    }


# A Deployment's final states, and how a deploy that reached one ended.
_ENDED: dict[str, Outcome] = {
    "success": "success",
    "failure": "failure",
    "error": "error",
    "inactive": "cancelled",
}


def resumed_deployment(ctx: RepoDeploys, attempt: str) -> DeploymentRef | None:
    """The existing Deployment a resumed deploy reports on (None for a new deploy)."""
    ref = ctx.reporter.deployments.get(attempt)
    if ref is None:
        return None
    reused = (r for by_key in ctx.reporter.reused.values() for r, _ in by_key.values())
    return ref if any(r is ref for r in reused) else None


async def ended_meanwhile(ctx: RepoDeploys, job: DeployJob) -> DeployResult | None:
    """A resumed deploy whose Deployment got a final status since recovery read it: not rerun.

    The old process (a leader cut off by a partition, still holding the hub's Lease) may
    have finished it after the new one requeued it; the new one checks once it holds the
    Lease. Reading fails: the deploy runs again, as it would without this check.
    """
    ref = resumed_deployment(ctx, job.labels.get("attempt", ""))
    if ref is None:
        return None
    try:
        statuses = await ctx.gh.getitem(f"{ref.url}/statuses{{?per_page}}", {"per_page": 100})
    except FAILURES as exc:
        logger.warning("could not re-read deployment %s: %s; deploying again", ref.id, exc)
        return None
    for status in statuses if isinstance(statuses, list) else []:  # newest first
        state = str(status.get("state"))
        if state in _ENDED:
            detail = f"already ended ({state}) on the hubbot replica that ran it before"
            logger.info("deploy of %s %s: not run again", job.target, detail)
            return DeployResult(_ENDED[state], detail)
    return None
