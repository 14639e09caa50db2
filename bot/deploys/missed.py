"""Start-up: a push to the default branch that was acknowledged, then lost, deploys now.

hubbot answers a `push` 202 and handles it from memory; a process killed before the push's
Deployments exist leaves nothing in GitHub to resume, and GitHub does not send the push
again. Every push to the default branch hubbot handled leaves a `hubbot/deploy` check run
on the pushed commit (a rollout's, "nothing to deploy", or "not deployed"), so a default
branch whose head has none was missed. Recovery then deploys the range from the newest
first-parent ancestor that has one, exactly as the push would have. With no such ancestor
among the last `HISTORY` commits hubbot has not deployed this branch lately (most likely it
was just installed, and a failed check on a young head would be a false alarm): a warning
is logged and counted, nothing deploys. Cost: 2 calls per repository when nothing was missed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.deploys.merge import deploy_pushed, report_not_started
from bot.deploys.progress import DEPLOY_CHECK
from bot.github.snapshot import RepoRef

if TYPE_CHECKING:
    from bot.deploys.service import DeployService

logger = logging.getLogger(__name__)

HISTORY = 30  # default-branch commits searched for the last deployed one (one listing call)
SOURCE = "push missed while hubbot was down, found at start-up"
Found = Literal["missed", "root", "unknown"]


@dataclass(frozen=True, slots=True)
class Head:
    """The default branch's head commit, as the branch endpoint gives it."""

    sha: str
    parents: tuple[str, ...]
    committed: datetime | None
    author: str

    @classmethod
    def from_branch(cls, data: object) -> Head | None:
        """Read `GET /branches/{branch}`; None when it is not a commit."""
        commit = data.get("commit") if isinstance(data, Mapping) else None
        if not isinstance(commit, Mapping) or not isinstance(commit.get("sha"), str):
            return None
        return cls(
            sha=str(commit["sha"]),
            parents=_parents(commit),
            committed=_date(((commit.get("commit") or {}).get("committer") or {}).get("date")),
            author=str((commit.get("author") or {}).get("login") or ""),
        )


def first_parent_chain(commits: Sequence[Mapping[str, Any]], head: str) -> tuple[list[str], bool]:
    """The first-parent ancestors of `head` found in a commit listing, newest first.

    The second value says whether the chain reached a root commit (one with no parents),
    rather than leaving the listing.
    """
    parents = {str(c.get("sha")): _parents(c) for c in commits if isinstance(c, Mapping)}
    chain: list[str] = []
    sha = head
    while sha in parents:
        if not parents[sha]:
            return chain, True
        sha = parents[sha][0]
        if sha in chain or sha == head:  # never loops, even on a malformed listing
            break
        chain.append(sha)
    return chain, False


async def find_base(
    chain: Sequence[str], reached_root: bool, deployed: Callable[[str], Awaitable[bool]]
) -> tuple[Found, str | None]:
    """The newest deployed commit of the chain: ("missed", sha), else ("root"|"unknown", None).

    "root": the chain is the whole history and none of it deployed (hubbot never deployed
    this branch, e.g. just installed): nothing was missed. "unknown": the search left the
    listing without finding one, so the range to deploy cannot be told.
    """
    for sha in chain:
        if await deployed(sha):
            return "missed", sha
    return ("root" if reached_root else "unknown"), None


async def has_deploy_check(gh: GitHubAPI, repo: RepoRef, sha: str, app_id: str | None) -> bool:
    """Whether the commit has a `hubbot/deploy` check run (this app's, when its id is known)."""
    data = await gh.getitem(
        f"{repo.url}/commits/{sha}/check-runs{{?check_name,filter,per_page}}",
        {"check_name": DEPLOY_CHECK, "filter": "all", "per_page": 100},
    )
    runs = data.get("check_runs", []) if isinstance(data, Mapping) else []
    return any(
        app_id is None or str((run.get("app") or {}).get("id")) == str(app_id)
        for run in runs
        if isinstance(run, Mapping)
    )


async def recover_missed(
    service: DeployService, gh: GitHubAPI, repo: RepoRef, branch: str, *, since: datetime
) -> None:
    """Deploy (or report) a push to `branch` that hubbot acknowledged and lost."""
    try:
        data = await gh.getitem(f"{repo.url}/branches/{{branch}}", {"branch": branch})
    except gidgethub.BadRequest as exc:
        if exc.status_code == 404:  # an empty repository: no default branch yet
            return
        raise
    head = Head.from_branch(data)
    if head is None or await has_deploy_check(gh, repo, head.sha, service.app_id):
        return
    if not head.parents:  # a first commit: nothing to compare with, as a created branch
        return
    if head.committed is None or head.committed < since:
        logger.info("%s: head %s has no deploy check but is old", repo.full_name, head.sha[:7])
        return
    started = service.started_at
    if started is not None and head.committed >= started:
        return  # pushed after this process started: its webhook comes to this process
    if service.merge_queued(repo, head.sha):  # recovery requeued it: it deploys already
        return
    listing = await gh.getitem(
        f"{repo.url}/commits{{?sha,per_page}}", {"sha": head.sha, "per_page": HISTORY}
    )
    chain, root = first_parent_chain(listing if isinstance(listing, list) else [], head.sha)

    async def deployed(sha: str) -> bool:
        queued = service.merge_queued(repo, sha)
        return queued or await has_deploy_check(gh, repo, sha, service.app_id)

    found, base = await find_base(chain, root, deployed)
    if found == "root":
        logger.info("%s: hubbot never deployed %s: nothing missed", repo.full_name, branch)
        return
    if base is None:  # more than HISTORY pushes lost is far less likely than a new install
        service.recovery["missed_unknown"] = service.recovery.get("missed_unknown", 0) + 1
        logger.warning(
            "%s: head %s of %s has no deploy check, nor has any of its last %d commits: "
            "taken as not deployed by hubbot yet (just installed?); if pushes were lost, "
            "deploy with `/deploy <cluster>/<hub>@%s`",
            repo.full_name,
            head.sha[:7],
            branch,
            HISTORY,
            head.sha,
        )
        return
    service.recovery["missed_pushes"] += 1
    await _deploy(service, gh, repo, branch, head, base)


async def _deploy(
    service: DeployService, gh: GitHubAPI, repo: RepoRef, branch: str, head: Head, base: str
) -> None:
    source = f"{SOURCE}: {base[:7]}..{head.sha[:7]}"
    logger.warning("%s: deploying the missed push %s", repo.full_name, source)
    try:
        await deploy_pushed(
            service,
            gh,
            repo,
            before=base,
            after=head.sha,
            branch=branch,
            source=source,
            actor=head.author,
            recovered=True,
        )
    except Exception as exc:  # as a push handler would: the head says it did not deploy
        # (Not on cancellation: a stop during recovery leaves the head unmarked, and the
        # next start-up finds the push missed again.)
        reason = f"start-up recovery of the missed push failed: {type(exc).__name__}"
        await report_not_started(gh, repo, sha=head.sha, reason=reason, service=service)
        raise


def _parents(commit: Mapping[str, Any]) -> tuple[str, ...]:
    parents = commit.get("parents")
    return tuple(
        str(p["sha"])
        for p in parents or ()
        if isinstance(p, Mapping) and isinstance(p.get("sha"), str)
    )


def _date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
