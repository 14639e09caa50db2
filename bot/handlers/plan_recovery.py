"""Plan checks a stopped process left open: found at start-up (or on taking the lead), re-planned.

A process killed mid-plan (SIGKILL, an OOM, a node lost) cannot conclude its `hubbot/plan`
check run, so GitHub would show it running forever. `find_stale` looks at the open PRs of
a repository (the newest `MAX_OPEN_PRS` updated) and, for each, at the `hubbot/plan` runs
of its head: one this app created that is still `queued` or `in_progress` was left behind.
`replan_stale` (queued behind the PR's other events, so it never races them) skips a run
concluded meanwhile, reads the PR again and re-plans it on the newest stale run, which
concludes it and refreshes the comment; older stale runs, and the run of a PR that moved
on or closed meanwhile, are concluded as `cancelled`, saying why.
Calls: 1 + one per open PR to find; 2 more per stale run, plus the plan itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gidgethub.abc import GitHubAPI

from bot.github.checks import PLAN_CHECK, CheckRun, now_iso
from bot.handlers.context import Services
from bot.handlers.pull_requests import PullRequest, plan_pull_request

logger = logging.getLogger(__name__)

MAX_OPEN_PRS = 100
OPEN = ("queued", "in_progress")


@dataclass(frozen=True, slots=True)
class StalePlan:
    """An open PR whose head carries a `hubbot/plan` run nobody will conclude."""

    repository: Mapping[str, Any]  # the repository as GitHub lists it (owner, name, url...)
    number: int
    head_sha: str
    run: CheckRun  # the newest open one: re-planned on
    older: list[CheckRun] = field(default_factory=list)  # open ones before it: cancelled


async def find_stale(
    gh: GitHubAPI, repository: Mapping[str, Any], *, app_id: str | None
) -> tuple[list[StalePlan], int]:
    """The repository's open PRs with a stale plan run, and how many API calls it took."""
    url = str(repository["url"])
    pulls = await gh.getitem(
        f"{url}/pulls{{?state,sort,direction,per_page}}",
        {"state": "open", "sort": "updated", "direction": "desc", "per_page": MAX_OPEN_PRS},
    )
    calls = 1
    found = []
    for pull in pulls[:MAX_OPEN_PRS] if isinstance(pulls, list) else []:
        sha = str(pull["head"]["sha"])
        # All runs, not the latest: a newer run (this process's) may hide a stale older one.
        data = await gh.getitem(
            f"{url}/commits/{sha}/check-runs{{?check_name,filter,per_page}}",
            {"check_name": PLAN_CHECK, "filter": "all", "per_page": 100},
        )
        calls += 1
        runs = data.get("check_runs", []) if isinstance(data, Mapping) else []
        left = sorted(
            (CheckRun(int(r["id"]), str(r["url"])) for r in runs if _open(r, app_id)),
            key=lambda run: run.id,
        )
        if left:
            found.append(StalePlan(repository, int(pull["number"]), sha, left[-1], left[:-1]))
    return found, calls


def _open(run: Mapping[str, Any], app_id: str | None) -> bool:
    return run.get("status") in OPEN and _ours(run, app_id)


def _ours(run: Mapping[str, Any], app_id: str | None) -> bool:
    app = run.get("app")
    return app_id is None or (isinstance(app, Mapping) and str(app.get("id")) == str(app_id))


async def replan_stale(gh: GitHubAPI, services: Services, stale: StalePlan) -> None:
    """Re-plan a PR on its stale run (concluding it), or conclude it if the PR moved on."""
    for older in stale.older:
        if await _still_open(gh, older):
            await _cancel(gh, older, "a newer plan run of this commit has the result")
    if not await _still_open(gh, stale.run):
        return  # concluded meanwhile (a plan of this process was running when we looked)
    repository = stale.repository
    pull = await gh.getitem(f"{repository['url']}/pulls/{stale.number}")
    pr = PullRequest.from_payload(pull, repository)
    if pr.state != "open" or pr.head_sha != stale.head_sha:
        why = "the pull request was closed" if pr.state != "open" else "a newer commit came"
        await _cancel(gh, stale.run, f"{why} since")
        return
    logger.info("re-planning #%s: its plan check was left open by a stopped bot", stale.number)
    await plan_pull_request(gh, services, pr, run=stale.run)


async def _still_open(gh: GitHubAPI, run: CheckRun) -> bool:
    current = await gh.getitem(run.url)
    return bool(current.get("status") != "completed")


async def _cancel(gh: GitHubAPI, run: CheckRun, why: str) -> None:
    await gh.patch(
        run.url,
        data={
            "status": "completed",
            "conclusion": "cancelled",
            "completed_at": now_iso(),
            "output": {
                "title": "hubbot stopped during this plan",
                "summary": f"hubbot stopped before finishing this plan; {why}.",
            },
        },
    )
