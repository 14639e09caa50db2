"""The pull request whose merge made a commit on the default branch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.github.snapshot import RepoRef


@dataclass(frozen=True, slots=True)
class MergedPull:
    """The PR whose merge made a pushed commit."""

    number: int
    labels: tuple[str, ...]
    comments_url: str


async def merged_pull_at(
    gh: GitHubAPI, repo: RepoRef, sha: str, default_branch: str
) -> MergedPull | None:
    """The PR merged into the default branch as `sha`, if any (by its merge commit)."""
    try:
        pulls = await gh.getitem(f"{repo.url}/commits/{sha}/pulls")
    except gidgethub.BadRequest as exc:
        if exc.status_code in (404, 422):
            return None
        raise
    candidates = [
        p
        for p in (pulls if isinstance(pulls, list) else [])
        if isinstance(p, Mapping)
        and p.get("merged_at")
        and (p.get("base") or {}).get("ref") == default_branch
    ]
    if not candidates:
        return None
    exact = [p for p in candidates if p.get("merge_commit_sha") == sha]
    pull = (exact or candidates)[0]
    number = int(pull["number"])
    comments_url = pull.get("comments_url") or f"{repo.url}/issues/{number}/comments"
    labels = tuple(str(label["name"]) for label in pull.get("labels") or () if "name" in label)
    return MergedPull(number, labels, str(comments_url))
