"""GitHub's JSON shapes that need the git repository: pulls, commits, diffs, contents, trees."""

from __future__ import annotations

import base64
import datetime as dt
import posixpath
from dataclasses import dataclass
from typing import Any

from bot.sandbox.github.gitrepo import CommitInfo, FileChange, GitRepo, MergeConflict, TreeEntry
from bot.sandbox.github.shapes import Shapes, node_id
from bot.sandbox.github.state import Pull, Review, State, iso


def b64_lines(data: bytes) -> str:
    """Base64 wrapped at 60 characters per line, as GitHub's contents and blob APIs send it."""
    text = base64.b64encode(data).decode()
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


def git_date(value: str) -> str:
    """A git ISO date as GitHub writes it (UTC, `Z`)."""
    return iso(dt.datetime.fromisoformat(value))


@dataclass(frozen=True, slots=True)
class PullStats:
    """What a pull request changes, measured from the merge base."""

    merge_base: str
    commits: int
    additions: int
    deletions: int
    changed_files: int


class GitShapes(Shapes):
    """Shapes that read the repository: pull requests, commits, comparisons and contents."""

    def __init__(self, state: State, repo: GitRepo):
        super().__init__(state)
        self.repo = repo

    # ---- pull requests -----------------------------------------------------------
    def base_tip(self, pull: Pull) -> str:
        """The base sha of a pull: the live base branch while open, frozen once closed."""
        if pull.state == "open":
            return self.repo.branch_sha(pull.base_ref) or pull.base_sha
        return pull.base_sha

    def pull_stats(self, pull: Pull) -> PullStats:
        """Commits and line counts of a pull, from the merge base to the head."""
        base = self.base_tip(pull)
        mb = self.repo.merge_base(base, pull.head_sha) or base
        changes = self.repo.changes(mb, pull.head_sha)
        return PullStats(
            merge_base=mb,
            commits=self.repo.count_between(mb, pull.head_sha),
            additions=sum(c.additions for c in changes),
            deletions=sum(c.deletions for c in changes),
            changed_files=len(changes),
        )

    def mergeable(self, pull: Pull) -> bool | None:
        """Whether the head merges cleanly into the base (None once closed, as on GitHub)."""
        if pull.state != "open":
            return None
        try:
            self.repo.merge_tree(self.base_tip(pull), pull.head_sha)
        except MergeConflict:
            return False
        return True

    def _ref(self, pull: Pull, *, head: bool, webhook: bool) -> dict[str, Any]:
        owner = pull.user if (head and pull.fork) else self.state.owner
        repo = self.repository(fork_owner=owner if (head and pull.fork) else None)
        ref = pull.head_ref if head else pull.base_ref
        sha = pull.head_sha if head else self.base_tip(pull)
        return {
            "label": f"{owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": self.user(owner),
            "repo": repo,
        }

    def _links(self, pull: Pull) -> dict[str, Any]:
        repo, n = self.repo_url(), pull.number
        hrefs = {
            "self": f"{repo}/pulls/{n}",
            "html": f"{self.html}/{self.state.full_name}/pull/{n}",
            "issue": f"{repo}/issues/{n}",
            "comments": f"{repo}/issues/{n}/comments",
            "review_comments": f"{repo}/pulls/{n}/comments",
            "review_comment": f"{repo}/pulls/comments{{/number}}",
            "commits": f"{repo}/pulls/{n}/commits",
            "statuses": f"{repo}/statuses/{pull.head_sha}",
        }
        return {k: {"href": v} for k, v in hrefs.items()}

    def pull_simple(self, pull: Pull, *, webhook: bool = False) -> dict[str, Any]:
        """A `pull-request-simple` (also the webhook `simple-pull-request`)."""
        repo, n = self.repo_url(), pull.number
        return {
            "url": f"{repo}/pulls/{n}",
            "id": pull.id,
            "node_id": node_id("PullRequest", pull.id),
            "html_url": f"{self.html}/{self.state.full_name}/pull/{n}",
            "diff_url": f"{self.html}/{self.state.full_name}/pull/{n}.diff",
            "patch_url": f"{self.html}/{self.state.full_name}/pull/{n}.patch",
            "issue_url": f"{repo}/issues/{n}",
            "number": n,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self.user(pull.user),
            "body": pull.body,
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at),
            "closed_at": iso(pull.closed_at) if pull.closed_at else None,
            "merged_at": iso(pull.merged_at) if pull.merged_at else None,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": [self.label(self.state.label(name)) for name in pull.labels],
            "milestone": None,
            "draft": pull.draft,
            "commits_url": f"{repo}/pulls/{n}/commits",
            "review_comments_url": f"{repo}/pulls/{n}/comments",
            "review_comment_url": f"{repo}/pulls/comments{{/number}}",
            "comments_url": f"{repo}/issues/{n}/comments",
            "statuses_url": f"{repo}/statuses/{pull.head_sha}",
            "head": self._ref(pull, head=True, webhook=webhook),
            "base": self._ref(pull, head=False, webhook=webhook),
            "_links": self._links(pull),
            "author_association": self.association(pull.user),
            "auto_merge": None,
            "active_lock_reason": None,
        }

    def pull(self, pull: Pull, *, webhook: bool = False) -> dict[str, Any]:
        """A full `pull-request` (also the webhook `pull-request`)."""
        stats = self.pull_stats(pull)
        mergeable = self.mergeable(pull)
        shape = self.pull_simple(pull, webhook=webhook)
        shape.update(
            merged=pull.merged,
            mergeable=mergeable,
            rebaseable=mergeable,
            mergeable_state={True: "clean", False: "dirty", None: "unknown"}[mergeable],
            merged_by=self.user(pull.merged_by) if pull.merged_by else None,
            comments=sum(1 for c in self.state.comments.values() if c.number == pull.number),
            review_comments=0,
            maintainer_can_modify=False,
            commits=stats.commits,
            additions=stats.additions,
            deletions=stats.deletions,
            changed_files=stats.changed_files,
        )
        return shape

    def issue(self, pull: Pull) -> dict[str, Any]:
        """The webhook `issue` for a pull request (issue_comment events carry it)."""
        repo, n = self.repo_url(), pull.number
        html = f"{self.html}/{self.state.full_name}/pull/{n}"
        return {
            "url": f"{repo}/issues/{n}",
            "repository_url": repo,
            "labels_url": f"{repo}/issues/{n}/labels{{/name}}",
            "comments_url": f"{repo}/issues/{n}/comments",
            "events_url": f"{repo}/issues/{n}/events",
            "html_url": html,
            "id": pull.id + 1,
            "node_id": node_id("Issue", pull.id + 1),
            "number": n,
            "title": pull.title,
            "user": self.user(pull.user),
            "labels": [self.label(self.state.label(name)) for name in pull.labels],
            "state": pull.state,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": sum(1 for c in self.state.comments.values() if c.number == n),
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at),
            "closed_at": iso(pull.closed_at) if pull.closed_at else None,
            "author_association": self.association(pull.user),
            "active_lock_reason": None,
            "draft": pull.draft,
            "pull_request": {
                "url": f"{repo}/pulls/{n}",
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": iso(pull.merged_at) if pull.merged_at else None,
            },
            "body": pull.body,
            "reactions": {
                "url": f"{repo}/issues/{n}/reactions",
                "total_count": 0,
                **{k: 0 for k in ("+1", "-1", "laugh", "hooray", "confused", "heart")},
                "rocket": 0,
                "eyes": 0,
            },
            "timeline_url": f"{repo}/issues/{n}/timeline",
            "state_reason": None,
        }

    def review(self, review: Review, pull: Pull, *, webhook: bool = False) -> dict[str, Any]:
        """A `pull-request-review` (webhooks spell the state in lower case)."""
        repo = self.repo_url()
        html = f"{self.html}/{self.state.full_name}/pull/{pull.number}"
        return {
            "id": review.id,
            "node_id": node_id("PullRequestReview", review.id),
            "user": self.user(review.user),
            "body": review.body,
            "commit_id": review.commit_id,
            "submitted_at": iso(review.submitted_at),
            "state": review.state.lower() if webhook else review.state,
            "html_url": f"{html}#pullrequestreview-{review.id}",
            "pull_request_url": f"{repo}/pulls/{pull.number}",
            "author_association": self.association(review.user),
            "_links": {
                "html": {"href": f"{html}#pullrequestreview-{review.id}"},
                "pull_request": {"href": f"{repo}/pulls/{pull.number}"},
            },
        }

    # ---- commits and comparisons -------------------------------------------------
    def _account_for(self, email: str) -> dict[str, Any] | None:
        for user in self.state.users.values():
            if user.email.lower() == email.lower():
                return self.user(user)
        return None

    def commit(self, info: CommitInfo, *, files: list[FileChange] | None = None) -> dict[str, Any]:
        """A REST `commit` (with `stats` and `files` when `files` is given)."""
        repo = self.repo_url()
        shape: dict[str, Any] = {
            "url": f"{repo}/commits/{info.sha}",
            "sha": info.sha,
            "node_id": node_id("Commit", int(info.sha[:8], 16)),
            "html_url": f"{self.html}/{self.state.full_name}/commit/{info.sha}",
            "comments_url": f"{repo}/commits/{info.sha}/comments",
            "commit": {
                "url": f"{repo}/git/commits/{info.sha}",
                "author": {
                    "name": info.author.name,
                    "email": info.author.email,
                    "date": git_date(info.author.date),
                },
                "committer": {
                    "name": info.committer.name,
                    "email": info.committer.email,
                    "date": git_date(info.committer.date),
                },
                "message": info.message,
                "comment_count": 0,
                "tree": {"sha": info.tree, "url": f"{repo}/git/trees/{info.tree}"},
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": self._account_for(info.author.email),
            "committer": self._account_for(info.committer.email),
            "parents": [
                {
                    "sha": p,
                    "url": f"{repo}/commits/{p}",
                    "html_url": f"{self.html}/{self.state.full_name}/commit/{p}",
                }
                for p in info.parents
            ],
        }
        if files is not None:
            adds = sum(f.additions for f in files)
            dels = sum(f.deletions for f in files)
            shape["stats"] = {"total": adds + dels, "additions": adds, "deletions": dels}
            shape["files"] = [self.diff_entry(f, info.sha) for f in files]
        return shape

    def diff_entry(self, change: FileChange, head_sha: str) -> dict[str, Any]:
        """A `diff-entry`, with `patch` for text files as GitHub gives it."""
        full = self.state.full_name
        shape: dict[str, Any] = {
            "sha": change.sha,
            "filename": change.filename,
            "status": change.status,
            "additions": change.additions,
            "deletions": change.deletions,
            "changes": change.additions + change.deletions,
            "blob_url": f"{self.html}/{full}/blob/{head_sha}/{change.filename}",
            "raw_url": f"{self.html}/{full}/raw/{head_sha}/{change.filename}",
            "contents_url": f"{self.repo_url()}/contents/{change.filename}?ref={head_sha}",
        }
        if change.patch is not None:
            shape["patch"] = change.patch
        if change.previous_filename is not None:
            shape["previous_filename"] = change.previous_filename
        return shape

    def push_commit(self, info: CommitInfo, changes: list[FileChange]) -> dict[str, Any]:
        """A webhook push `commit` with its added, modified and removed paths."""

        def person(name: str, email: str) -> dict[str, Any]:
            found = self._account_for(email)
            shape: dict[str, Any] = {"name": name, "email": email}
            if found is not None:
                shape["username"] = found["login"]
            return shape

        return {
            "id": info.sha,
            "tree_id": info.tree,
            "distinct": True,
            "message": info.message,
            "timestamp": git_date(info.committer.date),
            "url": f"{self.html}/{self.state.full_name}/commit/{info.sha}",
            "author": person(info.author.name, info.author.email),
            "committer": person(info.committer.name, info.committer.email),
            "added": [c.filename for c in changes if c.status == "added"],
            "modified": [c.filename for c in changes if c.status in ("modified", "renamed")],
            "removed": [c.filename for c in changes if c.status == "removed"]
            + [c.previous_filename for c in changes if c.previous_filename],
        }

    # ---- contents, trees and blobs ----------------------------------------------
    def content(self, entry: TreeEntry, ref: str, *, with_content: bool) -> dict[str, Any]:
        """A `content-file`, `content-symlink` or directory entry (content only for files)."""
        full = self.state.full_name
        kind = {"tree": "dir", "commit": "submodule"}.get(entry.type, "file")
        if entry.mode == "120000":
            kind = "symlink"
        git_kind = "trees" if kind == "dir" else "blobs"
        url = f"{self.repo_url()}/contents/{entry.path}?ref={ref}"
        git_url = f"{self.repo_url()}/git/{git_kind}/{entry.sha}"
        html_url = f"{self.html}/{full}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{entry.path}"
        shape: dict[str, Any] = {
            "type": kind,
            "size": entry.size or 0,
            "name": posixpath.basename(entry.path),
            "path": entry.path,
            "sha": entry.sha,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": (
                f"{self.html}/{full}/raw/{ref}/{entry.path}" if kind == "file" else None
            ),
            "_links": {"self": url, "git": git_url, "html": html_url},
        }
        if with_content and kind == "file":
            shape["encoding"] = "base64"
            shape["content"] = b64_lines(self.repo.blob(entry.sha))
        elif kind == "symlink":
            shape["target"] = self.repo.blob(entry.sha).decode("utf-8", "surrogateescape")
        return shape

    def tree(self, sha: str, entries: list[TreeEntry]) -> dict[str, Any]:
        """A `git-tree`."""
        repo = self.repo_url()
        items = []
        for e in entries:
            item: dict[str, Any] = {"path": e.path, "mode": e.mode, "type": e.type, "sha": e.sha}
            if e.type == "blob":
                item["size"] = e.size or 0
                item["url"] = f"{repo}/git/blobs/{e.sha}"
            elif e.type == "tree":
                item["url"] = f"{repo}/git/trees/{e.sha}"
            items.append(item)
        return {"sha": sha, "url": f"{repo}/git/trees/{sha}", "tree": items, "truncated": False}

    def blob(self, sha: str, data: bytes) -> dict[str, Any]:
        """A `blob`, base64 encoded."""
        return {
            "sha": sha,
            "node_id": node_id("Blob", int(sha[:8], 16)),
            "size": len(data),
            "url": f"{self.repo_url()}/git/blobs/{sha}",
            "content": b64_lines(data),
            "encoding": "base64",
        }
