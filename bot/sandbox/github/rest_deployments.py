"""Deployment endpoints: deployments, their statuses, and `auto_inactive`.

https://docs.github.com/en/rest/deployments/deployments
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.sandbox.github import actions
from bot.sandbox.github.context import Context, ctx, repo_owner
from bot.sandbox.github.gitrepo import MergeConflict
from bot.sandbox.github.http import (
    ApiError,
    json_response,
    not_found,
    paginate,
    read_json,
    validation_failed,
)
from bot.sandbox.github.state import Deployment, DeploymentStatus, now

routes = web.RouteTableDef()
PASSING = ("success", "neutral", "skipped")
MAX_DESCRIPTION = 140


def deployment_or_404(c: Context, ident: str) -> Deployment:
    """The deployment `ident`, or GitHub's 404."""
    dep = c.state.deployments.get(int(ident)) if ident.isdigit() else None
    if dep is None:
        raise not_found()
    return dep


def _failing_contexts(c: Context, sha: str, required: list[str] | None) -> list[str]:
    """Contexts (check run names here) that are not passing on `sha`.

    GitHub verifies every context when `required_contexts` is omitted; an empty list
    bypasses the check. Pending contexts fail it too.
    """
    latest: dict[str, str | None] = {}
    for run in sorted(c.state.check_runs.values(), key=lambda r: r.id):
        if run.head_sha == sha:
            latest[run.name] = run.conclusion
    names = list(latest) if required is None else required
    return [n for n in names if latest.get(n) not in PASSING]


async def _auto_merge(c: Context, ref: str, user: str) -> web.Response | None:
    """Merge the default branch into a branch that is behind it, as `auto_merge` does."""
    default = c.repo.default_branch
    async with c.lock:
        main, head = c.repo.branch_sha(default), c.repo.branch_sha(ref)
        if main is None or head is None or ref == default or c.repo.is_ancestor(main, head):
            return None
        try:
            tree = c.repo.merge_tree(head, main)
        except MergeConflict as exc:
            raise ApiError(409, f"Conflict merging {default} into {ref}.") from exc
        sha = c.repo.commit_tree(
            tree,
            [head, main],
            message=f"Merge {default} into {ref}",
            author=actions.person(c, user),
        )
        c.repo.update_ref(f"refs/heads/{ref}", sha, head)
        actions.announce_push(c, ref, head, sha, user)
    return json_response(
        {"message": f"Auto-merged {default} into {ref} on deployment."}, status=202
    )


@routes.post("/repos/{owner}/{repo}/deployments")
async def create_deployment(request: web.Request) -> web.Response:
    """POST /repos/{owner}/{repo}/deployments (201, or 202 after an auto-merge, or 409)."""
    repo_owner(request, write=True)
    c = ctx(request)
    body = await read_json(request)
    ref = body["ref"]
    sha = c.repo.resolve(ref)
    if sha is None:
        raise ApiError(422, f"No ref found for: {ref}")
    bot = c.state.app.bot_login
    if body.get("auto_merge", True):
        merged = await _auto_merge(c, ref, bot)
        if merged is not None:
            return merged
    failing = _failing_contexts(c, sha, body.get("required_contexts"))
    if failing:
        raise ApiError(
            409,
            f"Conflict: Commit status checks failed for {ref}.",
            errors=[
                {
                    "contexts": [{"context": n, "state": "failure"} for n in failing],
                    "resource": "Deployment",
                    "field": "required_contexts",
                    "code": "invalid",
                }
            ],
        )
    environment = body.get("environment", "production")
    moment = now()
    payload: dict[str, Any] | str = body.get("payload", {})
    dep = Deployment(
        id=c.state.next_id(),
        sha=sha,
        ref=ref,
        task=body.get("task", "deploy"),
        payload=payload,
        environment=environment,
        original_environment=environment,
        description=body.get("description", ""),
        creator=bot,
        created_at=moment,
        updated_at=moment,
        production_environment=body.get("production_environment", environment == "production"),
        transient_environment=body.get("transient_environment", False),
    )
    c.state.deployments[dep.id] = dep
    return json_response(c.shapes.deployment(dep), status=201)


@routes.get("/repos/{owner}/{repo}/deployments")
async def list_deployments(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/deployments?sha=&ref=&task=&environment= (newest first)."""
    repo_owner(request)
    c = ctx(request)
    found = sorted(c.state.deployments.values(), key=lambda d: -d.id)
    for key in ("sha", "ref", "task", "environment"):
        if key in request.query:
            found = [d for d in found if getattr(d, key) == request.query[key]]
    page, headers = paginate(request, found)
    return json_response([c.shapes.deployment(d) for d in page], headers=headers)


@routes.get("/repos/{owner}/{repo}/deployments/{deployment_id}")
async def get_deployment(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/deployments/{id}."""
    repo_owner(request)
    c = ctx(request)
    return json_response(
        c.shapes.deployment(deployment_or_404(c, request.match_info["deployment_id"]))
    )


@routes.post("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
async def create_status(request: web.Request) -> web.Response:
    """POST .../deployments/{id}/statuses, marking older deployments inactive on success."""
    repo_owner(request, write=True)
    c = ctx(request)
    dep = deployment_or_404(c, request.match_info["deployment_id"])
    body = await read_json(request)
    description = body.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise validation_failed(
            "DeploymentStatus", "description", "description is too long (maximum is 140 characters)"
        )
    if "environment" in body:
        dep.environment = body["environment"]
    status = _add_status(
        c,
        dep,
        body["state"],
        description=description,
        log_url=body.get("log_url") or body.get("target_url", ""),
        environment_url=body.get("environment_url", ""),
    )
    if status.state == "success" and body.get("auto_inactive", True):
        _inactivate_older(c, dep)
    return json_response(c.shapes.deployment_status(dep, status), status=201)


def _add_status(
    c: Context,
    dep: Deployment,
    state: str,
    *,
    description: str,
    log_url: str,
    environment_url: str,
) -> DeploymentStatus:
    status = DeploymentStatus(
        id=c.state.next_id(),
        state=state,
        description=description,
        environment=dep.environment,
        environment_url=environment_url,
        log_url=log_url,
        creator=c.state.app.bot_login,
        created_at=now(),
    )
    dep.statuses.append(status)
    dep.updated_at = status.created_at
    return status


def _inactivate_older(c: Context, dep: Deployment) -> None:
    # "Adds a new inactive status to all prior non-transient, non-production environment
    # deployments with the same repository and environment name ... that had a success state."
    for other in c.state.deployments.values():
        if (
            other.id < dep.id
            and other.environment == dep.environment
            and not other.transient_environment
            and not other.production_environment
            and other.statuses
            and other.statuses[-1].state == "success"
        ):
            _add_status(
                c,
                other,
                "inactive",
                description="",
                log_url="",
                environment_url=other.statuses[-1].environment_url,
            )


@routes.get("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
async def list_statuses(request: web.Request) -> web.Response:
    """GET .../deployments/{id}/statuses (newest first)."""
    repo_owner(request)
    c = ctx(request)
    dep = deployment_or_404(c, request.match_info["deployment_id"])
    page, headers = paginate(request, list(reversed(dep.statuses)))
    return json_response([c.shapes.deployment_status(dep, s) for s in page], headers=headers)
