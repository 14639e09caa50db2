"""GitHub's JSON shapes for accounts, the repository, the app, comments, checks and deployments.

Field sets follow the REST description's schemas (`simple-user`, `full-repository`,
`issue-comment`, `check-run`, `deployment`, ...) and the webhook schemas (which
forbid unknown keys, so webhook shapes are exact and REST shapes add to them).
Tests validate both against GitHub's published descriptions.
"""

from __future__ import annotations

import base64
from typing import Any

from bot.sandbox.github.state import (
    REACTIONS,
    CheckRun,
    Comment,
    Deployment,
    DeploymentStatus,
    Label,
    Reaction,
    State,
    User,
    iso,
)

ROLE_OF = {
    "admin": ("admin", "admin"),
    "maintain": ("write", "maintain"),
    "write": ("write", "write"),
    "triage": ("read", "triage"),
    "read": ("read", "read"),
    "none": ("none", "none"),
}
RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
APP_PERMISSIONS = {
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "members": "read",
    "pull_requests": "write",
}
APP_EVENTS = ["check_run", "issue_comment", "pull_request", "pull_request_review", "push"]


def node_id(kind: str, ident: int) -> str:
    """A node id in GitHub's legacy format (base64 of `0<len>:<Kind><id>`)."""
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


class Shapes:
    """Builds JSON objects from the double's state, with URLs on the double's own address."""

    def __init__(self, state: State):
        self.state = state

    # ---- URLs --------------------------------------------------------------------
    @property
    def api(self) -> str:
        """The REST root (`https://api.github.com` on the real thing)."""
        return self.state.base_url

    @property
    def html(self) -> str:
        """The web root (`https://github.com` on the real thing; not served by the double)."""
        return self.state.base_url + "/_html"

    def repo_url(self, full_name: str | None = None) -> str:
        """The REST URL of the repository (or a fork of it)."""
        return f"{self.api}/repos/{full_name or self.state.full_name}"

    # ---- accounts ----------------------------------------------------------------
    def user(self, user: User | str | None) -> dict[str, Any] | None:
        """A `simple-user` (also the webhook `user`), or None for None."""
        if user is None:
            return None
        u = user if isinstance(user, User) else self.state.ensure_user(user)
        api = f"{self.api}/users/{u.login}"
        html = f"{self.html}/{u.login}"
        if u.type == "Bot" and u.login.endswith("[bot]"):
            html = f"{self.html}/apps/{u.login[: -len('[bot]')]}"
        return {
            "login": u.login,
            "id": u.id,
            "node_id": node_id(u.type, u.id),
            "avatar_url": f"{self.html}/avatars/{u.id}",
            "gravatar_id": "",
            "url": api,
            "html_url": html,
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": u.type,
            "site_admin": False,
        }

    def public_user(self, user: User) -> dict[str, Any]:
        """A `public-user` for `GET /users/{username}`."""
        shape = self.user(user) or {}
        created = iso(self.state.created_at)
        shape.update(
            name=user.name,
            company=None,
            blog="",
            location=None,
            email=None,
            hireable=None,
            bio=None,
            twitter_username=None,
            public_repos=0,
            public_gists=0,
            followers=0,
            following=0,
            created_at=created,
            updated_at=created,
            user_view_type="public",  # the discriminator between public and private users
        )
        return shape

    def association(self, login: str) -> str:
        """The `author_association` of a login on this repository."""
        user = self.state.user(login)
        if user is None or user.type == "Bot":
            return "NONE"
        if user.login.lower() == self.state.owner.lower():
            return "OWNER"
        if any(login.lower() in {m.lower() for m in t.members} for t in self.state.teams.values()):
            return "MEMBER"
        return "COLLABORATOR" if user.permission != "none" else "CONTRIBUTOR"

    def organization(self) -> dict[str, Any]:
        """The webhook `organization` object for the owning organisation."""
        org = self.state.ensure_user(self.state.owner)
        api = f"{self.api}/orgs/{org.login}"
        return {
            "login": org.login,
            "id": org.id,
            "node_id": node_id("Organization", org.id),
            "url": api,
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events",
            "hooks_url": f"{api}/hooks",
            "issues_url": f"{api}/issues",
            "members_url": f"{api}/members{{/member}}",
            "public_members_url": f"{api}/public_members{{/member}}",
            "avatar_url": f"{self.html}/avatars/{org.id}",
            "description": None,
        }

    # ---- repository --------------------------------------------------------------
    def repository(self, *, fork_owner: str | None = None, push: bool = False) -> dict[str, Any]:
        """The webhook `repository` (exact keys); `push` uses epoch times as push events do."""
        s = self.state
        owner = fork_owner or s.owner
        full = f"{owner}/{s.name}"
        url = self.repo_url(full)
        ident = s.repo_id if fork_owner is None else s.repo_id + s.ensure_user(fork_owner).id
        created: int | str = iso(s.created_at)
        pushed: int | str = iso(s.pushed_at)
        if push:
            created, pushed = int(s.created_at.timestamp()), int(s.pushed_at.timestamp())
        legacy = {"stargazers": 0, "master_branch": "main", "organization": owner} if push else {}
        return {
            "id": ident,
            "node_id": node_id("Repository", ident),
            "name": s.name,
            "full_name": full,
            "private": False,
            "owner": self.user(owner),
            "html_url": f"{self.html}/{full}",
            "description": None,
            "fork": fork_owner is not None,
            "url": url,
            **{f"{k}_url": f"{url}/{v}" for k, v in _REPO_LINKS.items()},
            "created_at": created,
            "updated_at": iso(s.pushed_at),
            "pushed_at": pushed,
            "git_url": f"git://_sandbox/{full}.git",
            "ssh_url": f"git@_sandbox:{full}.git",
            "clone_url": f"{self.html}/{full}.git",
            "svn_url": f"{self.html}/{full}",
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": False,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": sum(1 for p in s.pulls.values() if p.state == "open"),
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": sum(1 for p in s.pulls.values() if p.state == "open"),
            "watchers": 0,
            "default_branch": "main",
            "custom_properties": {},
            **legacy,  # push payloads still carry these older repository keys
        }

    def full_repository(self, *, fork_owner: str | None = None) -> dict[str, Any]:
        """The REST `full-repository` of `GET /repos/{owner}/{repo}` (or of a fork)."""
        shape = self.repository(fork_owner=fork_owner)
        shape.pop("custom_properties")
        if fork_owner is not None:
            shape["parent"] = shape["source"] = self.repository()
        shape.update(
            subscribers_count=0,
            network_count=0,
            organization=self.user(self.state.owner),
            permissions={
                "admin": False,
                "maintain": False,
                "push": False,
                "triage": False,
                "pull": True,
            },
            allow_merge_commit=True,
            allow_squash_merge=True,
            allow_rebase_merge=True,
            allow_auto_merge=False,
            delete_branch_on_merge=False,
        )
        return shape

    # ---- the app -----------------------------------------------------------------
    def integration(self) -> dict[str, Any]:
        """The app (`integration`), as `GET /app` and `performed_via_github_app` show it."""
        app = self.state.app
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("Integration", app.id),
            "client_id": app.client_id,
            "owner": self.user(self.state.owner),
            "name": app.name,
            "description": "hubbot on the local GitHub double",
            "external_url": self.api,
            "html_url": f"{self.html}/apps/{app.slug}",
            "created_at": iso(app.created_at),
            "updated_at": iso(app.created_at),
            "permissions": dict(APP_PERMISSIONS),
            "events": list(APP_EVENTS),
            "installations_count": 1,
        }

    def webhook_app(self) -> dict[str, Any]:
        """The webhook `app` shape (a subset of `integration`)."""
        shape = self.integration()
        for key in ("client_id", "installations_count"):
            shape.pop(key)
        return shape

    def installation(self) -> dict[str, Any]:
        """The app's single installation, on the owning organisation."""
        s, app = self.state, self.state.app
        org = s.ensure_user(s.owner)
        return {
            "id": app.installation_id,
            "account": self.user(org),
            "repository_selection": "selected",
            "access_tokens_url": (
                f"{self.api}/app/installations/{app.installation_id}/access_tokens"
            ),
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": f"{self.html}/organizations/{org.login}/settings/installations/"
            f"{app.installation_id}",
            "app_id": app.id,
            "client_id": app.client_id,
            "target_id": org.id,
            "target_type": "Organization",
            "permissions": dict(APP_PERMISSIONS),
            "events": list(APP_EVENTS),
            "created_at": iso(app.created_at),
            "updated_at": iso(app.created_at),
            "single_file_name": None,
            "app_slug": app.slug,
            "suspended_by": None,
            "suspended_at": None,
        }

    def installation_lite(self) -> dict[str, Any]:
        """The webhook `installation` object."""
        ident = self.state.app.installation_id
        return {"id": ident, "node_id": node_id("Installation", ident)}

    # ---- labels, comments, reactions ---------------------------------------------
    def label(self, label: Label) -> dict[str, Any]:
        """A `label`."""
        return {
            "id": label.id,
            "node_id": node_id("Label", label.id),
            "url": f"{self.repo_url()}/labels/{label.name}",
            "name": label.name,
            # GitHub sends null for a label without one, but its REST description says a
            # string in pull-request-simple (list pulls, commits/{sha}/pulls): say "".
            "description": label.description or "",
            "color": label.color,
            "default": False,
        }

    def reactions_rollup(self, comment: Comment) -> dict[str, Any]:
        """The `reactions` summary of a comment."""
        counts: dict[str, Any] = {k: 0 for k in REACTIONS}
        for r in comment.reactions:
            counts[r.content] += 1
        return {
            "url": f"{self.repo_url()}/issues/comments/{comment.id}/reactions",
            "total_count": len(comment.reactions),
            **counts,
        }

    def comment(self, comment: Comment, *, webhook: bool = False) -> dict[str, Any]:
        """An `issue-comment` (the webhook variant has exactly the webhook keys)."""
        repo = self.repo_url()
        shape: dict[str, Any] = {
            "url": f"{repo}/issues/comments/{comment.id}",
            "html_url": f"{self.html}/{self.state.full_name}/pull/{comment.number}"
            f"#issuecomment-{comment.id}",
            "issue_url": f"{repo}/issues/{comment.number}",
            "id": comment.id,
            "node_id": node_id("IssueComment", comment.id),
            "user": self.user(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": self.association(comment.user),
            "body": comment.body,
            "reactions": self.reactions_rollup(comment),
            "performed_via_github_app": (
                (self.webhook_app() if webhook else self.integration()) if comment.via_app else None
            ),
        }
        return shape

    def reaction(self, reaction: Reaction) -> dict[str, Any]:
        """A `reaction`."""
        return {
            "id": reaction.id,
            "node_id": node_id("Reaction", reaction.id),
            "user": self.user(reaction.user),
            "content": reaction.content,
            "created_at": iso(reaction.created_at),
        }

    # ---- checks ------------------------------------------------------------------
    def check_run(self, run: CheckRun) -> dict[str, Any]:
        """A `check-run`."""
        repo = self.repo_url()
        output = run.output
        pulls = [
            self.pull_minimal(p.number)
            for p in self.state.pulls.values()
            if p.state == "open" and p.head_sha == run.head_sha
        ]
        return {
            "id": run.id,
            "head_sha": run.head_sha,
            "node_id": node_id("CheckRun", run.id),
            "external_id": run.external_id or "",
            "url": f"{repo}/check-runs/{run.id}",
            "html_url": f"{self.html}/{self.state.full_name}/runs/{run.id}",
            "details_url": run.details_url or f"{self.html}/{self.state.full_name}/runs/{run.id}",
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": iso(run.started_at) if run.started_at else None,
            "completed_at": iso(run.completed_at) if run.completed_at else None,
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": len(run.annotations),
                "annotations_url": f"{repo}/check-runs/{run.id}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": run.suite_id},
            "app": self.integration(),
            "pull_requests": pulls,
        }

    def annotation(self, run: CheckRun, note: dict[str, Any]) -> dict[str, Any]:
        """A `check-annotation` as the list endpoint returns it."""
        return {
            "path": note["path"],
            "start_line": note["start_line"],
            "end_line": note["end_line"],
            "start_column": note.get("start_column"),
            "end_column": note.get("end_column"),
            "annotation_level": note["annotation_level"],
            "title": note.get("title"),
            "message": note["message"],
            "raw_details": note.get("raw_details"),
            "blob_href": f"{self.html}/{self.state.full_name}/blob/{run.head_sha}/{note['path']}",
        }

    def pull_minimal(self, number: int) -> dict[str, Any]:
        """A `pull-request-minimal` (as check runs list their pulls)."""
        pull = self.state.pulls[number]
        repo = {"id": self.state.repo_id, "url": self.repo_url(), "name": self.state.name}
        return {
            "id": pull.id,
            "number": pull.number,
            "url": f"{self.repo_url()}/pulls/{pull.number}",
            "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": repo},
            "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": repo},
        }

    # ---- deployments -------------------------------------------------------------
    def deployment(self, dep: Deployment) -> dict[str, Any]:
        """A `deployment`."""
        url = f"{self.repo_url()}/deployments/{dep.id}"
        return {
            "url": url,
            "id": dep.id,
            "node_id": node_id("Deployment", dep.id),
            "sha": dep.sha,
            "ref": dep.ref,
            "task": dep.task,
            "payload": dep.payload,
            "original_environment": dep.original_environment,
            "environment": dep.environment,
            "description": dep.description,
            "creator": self.user(dep.creator),
            "created_at": iso(dep.created_at),
            "updated_at": iso(dep.updated_at),
            "statuses_url": f"{url}/statuses",
            "repository_url": self.repo_url(),
            "transient_environment": dep.transient_environment,
            "production_environment": dep.production_environment,
            "performed_via_github_app": self.integration(),
        }

    def deployment_status(self, dep: Deployment, status: DeploymentStatus) -> dict[str, Any]:
        """A `deployment-status`."""
        url = f"{self.repo_url()}/deployments/{dep.id}"
        return {
            "url": f"{url}/statuses/{status.id}",
            "id": status.id,
            "node_id": node_id("DeploymentStatus", status.id),
            "state": status.state,
            "creator": self.user(status.creator),
            "description": status.description,
            "environment": status.environment,
            "target_url": status.log_url,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "deployment_url": url,
            "repository_url": self.repo_url(),
            "environment_url": status.environment_url,
            "log_url": status.log_url,
            "performed_via_github_app": self.integration(),
        }


_REPO_LINKS = {
    "forks": "forks",
    "keys": "keys{/key_id}",
    "collaborators": "collaborators{/collaborator}",
    "teams": "teams",
    "hooks": "hooks",
    "issue_events": "issues/events{/number}",
    "events": "events",
    "assignees": "assignees{/user}",
    "branches": "branches{/branch}",
    "tags": "tags",
    "blobs": "git/blobs{/sha}",
    "git_tags": "git/tags{/sha}",
    "git_refs": "git/refs{/sha}",
    "trees": "git/trees{/sha}",
    "statuses": "statuses/{sha}",
    "languages": "languages",
    "stargazers": "stargazers",
    "contributors": "contributors",
    "subscribers": "subscribers",
    "subscription": "subscription",
    "commits": "commits{/sha}",
    "git_commits": "git/commits{/sha}",
    "comments": "comments{/number}",
    "issue_comment": "issues/comments{/number}",
    "contents": "contents/{+path}",
    "compare": "compare/{base}...{head}",
    "merges": "merges",
    "archive": "{archive_format}{/ref}",
    "downloads": "downloads",
    "issues": "issues{/number}",
    "pulls": "pulls{/number}",
    "milestones": "milestones{/number}",
    "notifications": "notifications{?since,all,participating}",
    "labels": "labels{/name}",
    "releases": "releases{/id}",
    "deployments": "deployments",
}
