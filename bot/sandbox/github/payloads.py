"""Webhook payloads, assembled from the same shapes the REST API serves.

Each payload has exactly the keys GitHub's webhook schemas allow for its event and
action; tests validate every payload the double sends against those schemas.
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.github.shapes import node_id
from bot.sandbox.github.shapes_git import GitShapes
from bot.sandbox.github.state import CheckRun, Comment, Pull, Review, iso, now


def _envelope(sh: GitShapes, sender: str, *, push: bool = False) -> dict[str, Any]:
    return {
        "repository": sh.repository(push=push),
        "organization": sh.organization(),
        "installation": sh.installation_lite(),
        "sender": sh.user(sender),
    }


def pull_request(
    sh: GitShapes, pull: Pull, action: str, sender: str, **extra: Any
) -> dict[str, Any]:
    """A `pull_request` event (`extra` carries label, changes, before/after)."""
    return {
        "action": action,
        "number": pull.number,
        **extra,
        "pull_request": sh.pull(pull, webhook=True),
        **_envelope(sh, sender),
    }


def issue_comment(
    sh: GitShapes,
    pull: Pull,
    comment: Comment,
    action: str,
    sender: str,
    *,
    previous_body: str | None = None,
) -> dict[str, Any]:
    """An `issue_comment` event on a pull request."""
    payload: dict[str, Any] = {"action": action}
    if action == "edited":
        payload["changes"] = {"body": {"from": previous_body or ""}}
    payload.update(
        issue=sh.issue(pull),
        comment=sh.comment(comment, webhook=True),
        **_envelope(sh, sender),
    )
    return payload


def pull_request_review(sh: GitShapes, pull: Pull, review: Review) -> dict[str, Any]:
    """A `pull_request_review` submitted event."""
    return {
        "action": "submitted",
        "review": sh.review(review, pull, webhook=True),
        "pull_request": sh.pull_simple(pull, webhook=True),
        **_envelope(sh, review.user),
    }


def push(
    sh: GitShapes, *, ref: str, before: str, after: str, sender: str, forced: bool = False
) -> dict[str, Any]:
    """A `push` event for a branch moving from `before` to `after` (zeros when created)."""
    repo = sh.repo
    zero = "0" * 40
    created, deleted = before == zero, after == zero
    commits: list[dict[str, Any]] = []
    head_commit = None
    if not deleted:
        shas = repo.commits_between(before, after) if not created else [after]
        for sha in shas[-20:]:  # GitHub lists at most 20 commits in a push payload
            info = repo.commit(sha)
            changes = repo.changes(info.parents[0], sha) if info.parents else []
            commits.append(sh.push_commit(info, changes))
        head_commit = commits[-1] if commits else None
    user = sh.state.ensure_user(sender)
    base = f"{sh.html}/{sh.state.full_name}"
    compare = f"{base}/compare/{before[:12]}...{after[:12]}"
    if created:
        compare = f"{base}/commit/{after[:12]}"
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": sh.repository(push=True),
        "pusher": {"name": user.login, "email": user.email},
        "organization": sh.organization(),
        "installation": sh.installation_lite(),
        "sender": sh.user(user),
        "created": created,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": compare,
        "commits": commits,
        "head_commit": head_commit,
    }


def ping(sh: GitShapes) -> dict[str, Any]:
    """A `ping` event for the app's webhook, as GitHub sends on registration."""
    app = sh.state.app
    created = iso(app.created_at)
    hook_url = f"{sh.api}/app/hook"
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": app.hook_id,
        "hook": {
            "type": "App",
            "id": app.hook_id,
            "name": "web",
            "active": True,
            "app_id": app.id,
            "events": ["issue_comment", "pull_request", "pull_request_review", "push"],
            "config": {
                "content_type": "json",
                "url": app.webhook_url or "http://127.0.0.1/",
                "insecure_ssl": "0",
            },
            "updated_at": iso(now()),
            "created_at": created,
            "url": hook_url,
            "ping_url": f"{hook_url}/pings",
            "deliveries_url": f"{hook_url}/deliveries",
        },
    }


# Suite conclusions by precedence; the schema's enum has no `skipped` for a suite.
_SUITE_ORDER = ("action_required", "cancelled", "timed_out", "failure", "neutral", "success")


def check_run_rerequested(sh: GitShapes, run: CheckRun, sender: str) -> dict[str, Any]:
    """A `check_run` `rerequested` event, as GitHub sends when someone clicks "Re-run"."""
    shape = sh.check_run(run)
    shape["app"] = sh.webhook_app()
    shape["check_suite"] = _check_suite(sh, run, shape["pull_requests"])
    return {"action": "rerequested", "check_run": shape, **_envelope(sh, sender)}


def _check_suite(sh: GitShapes, run: CheckRun, pulls: list[Any]) -> dict[str, Any]:
    """The webhook's `check_suite` of a run: the app's one suite on the run's commit."""
    runs = [r for r in sh.state.check_runs.values() if r.suite_id == run.suite_id]
    endings = {r.conclusion for r in runs if r.status == "completed"}
    conclusion = next((c for c in _SUITE_ORDER if c in endings), "neutral")
    times = [t for r in runs for t in (r.started_at, r.completed_at) if t is not None]
    created = min(times, default=now())
    updated = max(times, default=created)
    parents = sh.repo.commit(run.head_sha).parents
    return {
        "id": run.suite_id,
        "node_id": node_id("CheckSuite", run.suite_id),
        "head_branch": _head_branch(sh, run.head_sha),
        "head_sha": run.head_sha,
        "status": "completed",  # a run can be re-run once completed, as its suite then is
        "conclusion": conclusion,
        "url": f"{sh.repo_url()}/check-suites/{run.suite_id}",
        "before": parents[0] if parents else None,
        "after": run.head_sha,
        "pull_requests": pulls,
        "app": sh.webhook_app(),
        "created_at": iso(created),
        "updated_at": iso(updated),
    }


def _head_branch(sh: GitShapes, sha: str) -> str | None:
    """The branch the commit was pushed to: the default branch when it holds it, else a tip."""
    default = sh.repo.default_branch
    names = [default, *(b for b in sh.repo.branches() if b != default)]
    for name in names:
        tip = sh.repo.branch_sha(name)
        if tip == sha or (name == default and tip and sh.repo.is_ancestor(sha, tip)):
            return name
    return None
