"""Deploy on merge: plan a push to the default branch and hand its targets to the rollout.

The range `before..after` is planned in semantic mode with the settings of the default
branch at `after` (the rules just merged) and the merged PR's labels. Errors in the plan
deploy nothing, and say so: a `hubbot/deploy` check concluded `failure` with each error
as an annotation, and the merged PR's deploy comment. A plan with nothing to deploy gets
a concluded check too (and a comment when a label or an unchanged value skipped
releases), so every merge says what became of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.core.findings import Finding, has_errors, sort_findings
from bot.core.planner import Plan, Target, settings_of
from bot.core.semantic import plan_snapshots
from bot.deploys.progress import DEPLOY_CHECK, DEPLOY_MARKER
from bot.deploys.schedule import Stage, Step
from bot.github.checks import annotation, complete_check, start_check
from bot.github.comments import upsert_comment
from bot.github.pulls import merged_pull_at
from bot.github.snapshot import RepoRef

if TYPE_CHECKING:
    from bot.deploys.service import DeployService, MergeOutcome

logger = logging.getLogger(__name__)

MAX_LISTED = 30


def steps_of(plan: Plan) -> list[Step]:
    """The schedule steps of a plan: support releases, staging hubs, prod hubs."""
    lists: tuple[tuple[Stage, tuple[Target, ...]], ...] = (
        ("support", plan.support),
        ("staging", plan.staging),
        ("prod", plan.prod),
    )
    return [Step(t.cluster, t.hub, stage, reasons=t.reasons) for stage, ts in lists for t in ts]


async def plan_merge(
    service: DeployService,
    gh: GitHubAPI,
    repo: RepoRef,
    *,
    before: str,
    after: str,
    pr: int | None,
    labels: Sequence[str],
    comments_url: str | None,
    source: str,
    actor: str,
    delivery: str,
    default_branch: str | None = None,
) -> MergeOutcome:
    """Plan the push and submit its steps, or report why nothing deploys.

    The steps deploy the default branch's CURRENT head, which contains `after`: a delayed,
    redelivered or replayed old push (GitHub signs the body, not the delivery id) then
    redeploys what main is now, and can never roll a hub back to an older commit.
    """
    from bot.deploys.service import MergeOutcome

    head = await service.snapshots.at_commit(gh, repo, after)
    base = await service.snapshots.at_commit(gh, repo, before)
    settings, settings_findings = settings_of(head)
    plan = await asyncio.to_thread(plan_snapshots, base, head, settings, tuple(labels))
    findings = sort_findings([*plan.findings, *settings_findings])
    report = _Report(gh, repo, after, pr, comments_url, service)
    if has_errors(findings):
        await report.blocked(findings)
        errors = sum(1 for f in findings if f.is_error)
        return MergeOutcome([], plan, f"{errors} error(s) block the deploy")
    steps = steps_of(plan)
    if not steps:
        await report.nothing(plan)
        return MergeOutcome([], plan, "nothing to deploy")
    ctx = service.context(gh, repo, settings)
    sha = await current_head(gh, repo, default_branch) or after
    if sha != after:
        source += f"; deployed at {sha[:7]}, the default branch's head, which contains it"
    waves = await service.submit(
        ctx,
        steps,
        settings,
        kind="merge",
        sha=sha,
        actor=actor,
        pr=pr,
        comments_url=comments_url,
        source=source,
        delivery=delivery,
    )
    return MergeOutcome(waves, plan, f"queued {len(steps)} target(s) in {len(waves)} wave(s)")


async def deploy_pushed(
    service: DeployService,
    gh: GitHubAPI,
    repo: RepoRef,
    *,
    before: str,
    after: str,
    branch: str,
    source: str,
    actor: str,
    delivery: str = "",
    recovered: bool = False,
) -> None:
    """Deploy a push `before..after` to the default branch, told on the PR it merged, if any."""
    merged = await merged_pull_at(gh, repo, after, branch)
    if merged is not None:
        source += f" (merge of #{merged.number})"
    await service.deploy_merge(
        gh,
        repo,
        before=before,
        after=after,
        default_branch=branch,
        pr=merged.number if merged else None,
        labels=merged.labels if merged else (),
        comments_url=merged.comments_url if merged else None,
        source=source,
        actor=actor,
        delivery=delivery,
        recovered=recovered,
    )


async def current_head(gh: GitHubAPI, repo: RepoRef, branch: str | None) -> str | None:
    """The commit the default branch points at now (None when it cannot be read)."""
    if not branch:
        return None
    try:
        data = await gh.getitem(f"{repo.url}/branches/{{branch}}", {"branch": branch})
    except gidgethub.GitHubException:
        return None
    commit = data.get("commit") if isinstance(data, dict) else None
    sha = commit.get("sha") if isinstance(commit, dict) else None
    return sha if isinstance(sha, str) and len(sha) == 40 else None


async def report_not_started(
    gh: GitHubAPI, repo: RepoRef, *, sha: str, reason: str, service: DeployService
) -> None:
    """A push whose deploy could not even be planned (GitHub failed us): a check that says so.

    The webhook was answered 202, so GitHub will not send it again by itself: without this
    check the merge would deploy nothing, silently. Logs, never raises (the caller is
    already handling a failure).
    """
    title = f"❌ Not deployed: hubbot could not plan the deploy of {sha[:7]}"
    summary = (
        f"### {title}\n\nhubbot stopped before deploying anything: {reason}.\n\n"
        "To deploy this push, redeliver its `push` webhook (the GitHub App's advanced "
        f"settings), or comment `/deploy <cluster>/<hub>@{sha}` on a pull request."
    )
    report = _Report(gh, repo, sha, None, None, service)
    try:
        await report._check("failure", title, summary, [])
    except Exception:  # GitHub is failing us already: the log is all that is left
        logger.exception("could not report that the deploy of %s did not start", sha[:7])


class _Report:
    """Check run and comment for a push that deploys nothing."""

    def __init__(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        sha: str,
        pr: int | None,
        comments_url: str | None,
        service: DeployService,
    ) -> None:
        self.gh, self.repo, self.sha, self.pr = gh, repo, sha, pr
        self.comments_url, self.service = comments_url, service

    async def blocked(self, findings: Sequence[Finding]) -> None:
        errors = [f for f in findings if f.is_error]
        title = f"❌ Not deployed: {len(errors)} error(s) on the default branch at {self.sha[:7]}"
        lines = [f"- `{f.path}`:{f.line or '-'} {f.message}" for f in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"- … and {len(errors) - MAX_LISTED} more")
        body = f"### {title}\n\nhubbot deploys nothing while these errors stand:\n\n"
        body += "\n".join(lines) + "\n\nFix them in a new pull request; its merge deploys."
        await self._check("failure", title, body, [annotation(f) for f in findings])
        await self._comment(body)

    async def nothing(self, plan: Plan) -> None:
        if plan.skipped:
            title = f"Nothing deployed: {len(plan.skipped)} release(s) skipped"
            lines = [f"- `{t.name}`: {'; '.join(t.reasons)}" for t in plan.skipped[:MAX_LISTED]]
            body = f"### ➖ {title}\n\n" + "\n".join(lines)
            await self._check("skipped", title, body, [])
            await self._comment(body)
            return
        title = "Nothing to deploy: this change touches no release"
        await self._check("neutral", title, f"### {title}", [])

    async def _check(
        self, conclusion: str, title: str, summary: str, annotations: list[dict[str, object]]
    ) -> None:
        run = await start_check(
            self.gh, repo_url=self.repo.url, head_sha=self.sha, name=DEPLOY_CHECK
        )
        await complete_check(
            self.gh,
            run,
            conclusion=conclusion,  # type: ignore[arg-type]
            title=title,
            summary=summary,
            annotations=annotations,
        )

    async def _comment(self, body: str) -> None:
        if self.pr is None or self.comments_url is None:
            return
        await upsert_comment(
            self.gh,
            comments_url=self.comments_url,
            key=(self.repo.full_name, self.pr, DEPLOY_MARKER),
            body=f"{DEPLOY_MARKER}\n{body}",
            cache=self.service.comments,
            app_id=self.service.app_id,
        )
