"""`/deploy`: preview a PR's head on staging hubs, or redeploy a commit of the default branch.

- `/deploy staging` deploys the PR head to the staging hubs its plan deploys (the
  plan's staging gate adds every staging hub of a cluster whose prod hubs change).
- `/deploy <cluster>/<hub> ...` deploys the PR head to those staging hubs.
- `/deploy <cluster>/<hub>@<sha> ...` redeploys a commit of the default branch to any
  hubs, prod included: a redeploy or a roll back, for people with write access.

A preview is pinned to the head SHA read when the command was accepted, is refused
when the plan has errors, and waits for no one: a staging hub claimed by another
open PR refuses it, with a link to the holder. Every refusal deploys nothing.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import gidgethub

from bot.core.commands import Command, Target
from bot.core.findings import Finding
from bot.core.model import Repository, load_repository
from bot.core.permissions import (
    Actor,
    may_deploy_pr,
    may_redeploy,
    partner_clusters,
)
from bot.core.planner import Plan
from bot.core.semantic import changed_paths, plan_repositories
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.deploys.claims import Claim, conflicts
from bot.deploys.service import DeployService
from bot.handlers.command_context import CommentRun, FreshPull, Refused
from bot.handlers.context import PayloadError

Hub = tuple[str, str]  # (cluster, hub)
MAX_LISTED_ERRORS = 5

# One preview at a time per repository (per deploy service, so per app): checking claims
# and queueing the preview's Deployments must not interleave with another PR's, or both
# would find the hub free. `claims(fresh=True)` sees the previews queued before it.
_PREVIEW_LOCKS: weakref.WeakKeyDictionary[DeployService, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def preview_lock(deploys: DeployService, repo: str) -> asyncio.Lock:
    """The lock that serialises previews of `repo` through `deploys`."""
    locks = _PREVIEW_LOCKS.setdefault(deploys, {})
    return locks.setdefault(repo.lower(), asyncio.Lock())


async def run_deploy(run: CommentRun, command: Command) -> str:
    """`/deploy ...`: a preview of this PR, or a redeploy of default-branch commits."""
    if command.staging:
        return await preview(run, None)
    pinned = [t for t in command.targets if t.sha]
    if pinned and len(pinned) < len(command.targets):
        raise Refused(
            "a `/deploy` line either previews this PR (`<cluster>/<hub>`) or redeploys the "
            "default branch (`<cluster>/<hub>@<sha>`), not both: write one line for each"
        )
    if pinned:
        return await redeploy(run, pinned)
    return await preview(run, [(t.cluster, t.hub) for t in command.targets])


@dataclass(frozen=True, slots=True)
class Change:
    """The PR's head as a repository model, and its plan against the merge base."""

    head: Repository
    plan: Plan


def load_change(
    base: Snapshot, head: Snapshot, settings: Settings, labels: Sequence[str]
) -> Change:
    """Load both sides and plan them (pure and blocking: run it in a thread)."""
    base_repo = load_repository(base, settings)
    head_repo = load_repository(head, settings)
    plan = plan_repositories(base_repo, head_repo, changed_paths(base, head), labels)
    return Change(head_repo, plan)


async def plan_head(run: CommentRun, fresh: FreshPull, settings: Settings) -> Change:
    """Plan the PR head pinned in `fresh`, with the default branch's settings."""
    reader, pr = run.services.snapshots, fresh.pr
    comparison = await reader.compare(run.gh, pr.repo, pr.base_sha, pr.head_sha)
    base = await reader.at_commit(run.gh, pr.repo, comparison.merge_base)
    head = await reader.at_head(run.gh, pr.repo, base, comparison)
    return await asyncio.to_thread(load_change, base, head, settings, pr.labels)


async def deploy_settings(run: CommentRun) -> Settings:
    """The default branch's settings; refused while its hubbot.yaml has errors."""
    repo_settings = await run.repo_settings()
    errors = [f for f in repo_settings.findings if f.is_error]
    if errors:
        raise Refused(
            "`hubbot.yaml` on the default branch has errors, so deploys are off until it is "
            f"fixed there: {_findings(errors)}"
        )
    return repo_settings.settings


def early_refusal(settings: Settings, actor: Actor, *, fork: bool) -> str | None:
    """Why `actor` may deploy no hub of this PR at all, before anything is planned; or None."""
    if actor.can_write or (not fork and partner_clusters(settings, actor)):
        return None
    # Any target gives the same answer here; the core words the refusal.
    return may_deploy_pr(settings, actor, [("", "")], fork=fork, is_staging=lambda _: True).reason


async def preview(run: CommentRun, named: list[Hub] | None) -> str:
    """Deploy this PR's head to staging hubs: the plan's (`named` None) or the named ones."""
    fresh = await run.pull()
    if not fresh.open:
        raise Refused(f"this pull request is {fresh.pr.state}: only an open one deploys a preview")
    settings = await deploy_settings(run)
    actor = await run.actor(teams=True)
    reason = early_refusal(settings, actor, fork=fresh.fork)
    if reason is None and named is not None:
        decision = may_deploy_pr(settings, actor, named, fork=fresh.fork)
        reason = None if decision.allowed else decision.reason
    if reason is not None:
        raise Refused(reason)
    change = await plan_head(run, fresh, settings)
    sha = fresh.pr.head_sha
    if change.plan.errors:
        raise Refused(f"the plan of `{sha[:7]}` has errors: {_findings(change.plan.errors)}")
    if named is None:
        targets = sorted({(t.cluster, t.hub) for t in change.plan.staging if t.hub is not None})
        decision = may_deploy_pr(settings, actor, targets, fork=fresh.fork)
        if not decision.allowed:
            raise Refused(decision.reason)
    else:
        missing = [f"{c}/{h}" for c, h in named if change.head.hub(f"{c}/{h}") is None]
        if missing:
            raise Refused(f"there is no hub {_names(missing)} at this PR's head `{sha[:7]}`")
        targets = sorted(set(named))
    environments = [f"{c}/{h}" for c, h in targets]
    deploys = run.services.deploys
    async with preview_lock(deploys, run.repo.full_name):
        claims = await deploys.claims(run.gh, run.repo, environments, fresh=True, settings=settings)
        held = conflicts(claims, environments, run.number)
        if held:
            raise Refused(_claimed(run, held))
        await deploys.deploy_preview(
            run.gh,
            run.repo,
            pr=run.number,
            pr_author=fresh.author,
            head_sha=sha,
            targets=targets,
            actor=run.login,
            comments_url=run.comments_url,
            settings=settings,
            delivery=run.delivery,
        )
    note = ""
    if named is None and change.plan.support:
        note = " Support releases deploy on merge only."
    return (
        f"queued {_names(environments)} at `{sha[:7]}`, this PR's head when the command was "
        f"read; they are claimed for #{run.number} until it is merged or closed, or `/unlock`."
        f"{note}"
    )


def _claimed(run: CommentRun, held: list[Claim]) -> str:
    by_pr: dict[int, list[Claim]] = {}
    for claim in held:
        by_pr.setdefault(claim.pr, []).append(claim)
    parts = [
        f"{_names([c.environment for c in claims])} "
        f"{'is' if len(claims) == 1 else 'are'} claimed by {run.pull_link(pr)} "
        f"(by @{claims[0].author}) until {_when(min(c.expires for c in claims))}"
        for pr, claims in sorted(by_pr.items())
    ]
    return (
        "; ".join(parts) + ". Nothing was deployed: a claim ends when its PR is merged or "
        "closed, or with `/unlock` by its author or someone with write access."
    )


async def redeploy(run: CommentRun, targets: list[Target]) -> str:
    """Deploy commits of the default branch to any hubs (write access only)."""
    decision = may_redeploy(await run.actor())
    if not decision.allowed:
        raise Refused(decision.reason)
    settings = await deploy_settings(run)
    by_sha: dict[str, set[Hub]] = {}
    for target in targets:
        full = await commit_on_default(run, str(target.sha))
        by_sha.setdefault(full, set()).add((target.cluster, target.hub))
    for full, hubs in by_sha.items():
        snapshot = await run.services.snapshots.at_commit(run.gh, run.repo, full)
        model = await asyncio.to_thread(load_repository, snapshot, settings)
        missing = sorted(f"{c}/{h}" for c, h in hubs if model.hub(f"{c}/{h}") is None)
        if missing:
            raise Refused(f"there is no hub {_names(missing)} at `{full[:7]}`")
    queued = []
    for full, hubs in by_sha.items():
        await run.services.deploys.redeploy(
            run.gh,
            run.repo,
            targets=sorted(hubs),
            sha=full,
            actor=run.login,
            pr=run.number,
            comments_url=run.comments_url,
            settings=settings,
            delivery=run.delivery,
        )
        queued.append(f"{_names(sorted(f'{c}/{h}' for c, h in hubs))} at `{full[:7]}`")
    return f"queued {'; '.join(queued)} of `{run.default_branch}`"


async def commit_on_default(run: CommentRun, sha: str) -> str:
    """The full SHA of `sha` if it is a commit of the default branch; refused otherwise.

    `compare/{default}...{sha}` is `behind` (or `identical`) exactly when `sha` is an
    ancestor of the default branch, and its merge base is then `sha` itself. This way
    round it lists no commits and no files, however old `sha` is.
    """
    branch = run.default_branch
    try:
        data = await run.gh.getitem(f"{run.repo.url}/compare/{quote(branch, safe='/')}...{sha}")
    except gidgethub.BadRequest as exc:
        if exc.status_code in (404, 422):
            raise Refused(f"`{sha}` is not a commit of this repository") from None
        raise
    if not isinstance(data, Mapping):
        raise PayloadError("the compare answer is not an object")
    if data.get("status") not in ("behind", "identical"):
        raise Refused(
            f"`{sha}` is not a commit of the default branch `{branch}`: only merged commits "
            "are redeployed; a PR previews on staging with `/deploy staging`"
        )
    base = data.get("merge_base_commit")
    full = base.get("sha") if isinstance(base, Mapping) else None
    if not isinstance(full, str) or not full.startswith(sha):
        raise PayloadError("the compare answer lacks the commit's full SHA")
    return full


def _names(keys: Sequence[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _findings(findings: Sequence[Finding]) -> str:
    shown = [
        f"`{f.path}{f':{f.line}' if f.line else ''}` {f.message}"
        for f in findings[:MAX_LISTED_ERRORS]
    ]
    more = len(findings) - len(shown)
    return "; ".join(shown) + (f" (+{more} more in the plan comment)" if more > 0 else "")
