"""The control API's plain views of pull requests and deployments (not GitHub shapes)."""

from __future__ import annotations

from typing import Any

from bot.sandbox.github.context import Context
from bot.sandbox.github.state import CheckRun, Deployment, Pull, iso


def check_run_view(run: CheckRun) -> dict[str, Any]:
    """A check run with its output and every annotation."""
    return {
        "id": run.id,
        "name": run.name,
        "head_sha": run.head_sha,
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": iso(run.started_at) if run.started_at else None,
        "completed_at": iso(run.completed_at) if run.completed_at else None,
        "details_url": run.details_url,
        "external_id": run.external_id,
        "output": {
            "title": run.output.get("title"),
            "summary": run.output.get("summary"),
            "text": run.output.get("text"),
        },
        "annotations": [dict(a) for a in run.annotations],
    }


def deployment_view(dep: Deployment) -> dict[str, Any]:
    """A deployment with its statuses, oldest first."""
    return {
        "id": dep.id,
        "sha": dep.sha,
        "ref": dep.ref,
        "task": dep.task,
        "environment": dep.environment,
        "original_environment": dep.original_environment,
        "description": dep.description,
        "payload": dep.payload,
        "creator": dep.creator,
        "production_environment": dep.production_environment,
        "transient_environment": dep.transient_environment,
        "created_at": iso(dep.created_at),
        "statuses": [
            {
                "id": s.id,
                "state": s.state,
                "description": s.description,
                "environment": s.environment,
                "environment_url": s.environment_url,
                "log_url": s.log_url,
                "creator": s.creator,
                "created_at": iso(s.created_at),
            }
            for s in dep.statuses
        ],
    }


def pull_view(c: Context, pull: Pull) -> dict[str, Any]:
    """Everything a reviewer sees on a pull request, in plain data."""
    commits = set(pull.head_history)
    if pull.merge_commit_sha:
        commits.add(pull.merge_commit_sha)
    comments = sorted(
        (x for x in c.state.comments.values() if x.number == pull.number), key=lambda x: x.id
    )
    return {
        "number": pull.number,
        "title": pull.title,
        "body": pull.body,
        "user": pull.user,
        "state": pull.state,
        "merged": pull.merged,
        "draft": pull.draft,
        "fork": pull.fork,
        "head": {"ref": pull.head_ref, "sha": pull.head_sha},
        "base": {"ref": pull.base_ref, "sha": c.shapes.base_tip(pull)},
        "head_shas": list(pull.head_history),
        "merge_commit_sha": pull.merge_commit_sha,
        "labels": list(pull.labels),
        "comments": [
            {
                "id": x.id,
                "user": x.user,
                "user_type": c.state.ensure_user(x.user).type,
                "body": x.body,
                "created_at": iso(x.created_at),
                "updated_at": iso(x.updated_at),
                "reactions": [{"user": r.user, "content": r.content} for r in x.reactions],
            }
            for x in comments
        ],
        "reviews": [
            {"id": r.id, "user": r.user, "state": r.state, "body": r.body, "commit_id": r.commit_id}
            for r in pull.reviews
        ],
        "check_runs": [
            check_run_view(r)
            for r in sorted(c.state.check_runs.values(), key=lambda r: r.id)
            if r.head_sha in commits
        ],
        "deployments": [
            deployment_view(d)
            for d in sorted(c.state.deployments.values(), key=lambda d: d.id)
            if d.sha in commits
        ],
    }
