"""The control API under `/_sandbox/`: act as people on the repository.

A stable public contract (documented in docs/sandbox.md): demos, users and outside checks
drive the double through it. Every mutating call waits until the webhooks it causes
have been answered and lists them under `deliveries`. What happened is read through
`control_records.py`.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bot.sandbox.github import actions, payloads
from bot.sandbox.github.context import Context, ctx
from bot.sandbox.github.control_io import field, files_of, read_body, settle
from bot.sandbox.github.http import ApiError, json_response
from bot.sandbox.github.state import PERMISSIONS, Pull, Team
from bot.sandbox.github.views import pull_view

routes = web.RouteTableDef()
DEFAULT_USER = "octocat"  # a user with write permission, created at start


def pull_of(c: Context, request: web.Request) -> Pull:
    """The pull request `{number}` names (404 otherwise)."""
    number = request.match_info["number"]
    pull = c.state.pulls.get(int(number)) if number.isdigit() else None
    if pull is None:
        raise ApiError(404, f"no pull request #{number}")
    return pull


# ---- the sandbox, people and teams -------------------------------------------------
@routes.get("/_sandbox")
@routes.get("/_sandbox/")
async def info(request: web.Request) -> web.Response:
    """What the double serves: URLs, app, installation, repository."""
    c = ctx(request)
    s, app = c.state, c.state.app
    return json_response(
        {
            "api_url": s.base_url,
            "control_url": f"{s.base_url}/_sandbox",
            "web_url": f"{s.base_url}/_html",
            "installation_id": app.installation_id,
            "app_id": app.id,
            "app_slug": app.slug,
            "bot_login": app.bot_login,
            "repository": s.full_name,
            "owner": s.owner,
            "default_branch": c.repo.default_branch,
            "repo_dir": c.repo.path,
            "webhook_url": app.webhook_url,
            "default_user": DEFAULT_USER,
        }
    )


@routes.post("/_sandbox/users")
async def create_user(request: web.Request) -> web.Response:
    """Create or update a user: login, permission on the repository, type (User or Bot)."""
    c = ctx(request)
    body = await read_body(request)
    permission = field(body, "permission", str, "none")
    kind = field(body, "type", str, "User")
    if permission not in PERMISSIONS or kind not in ("User", "Bot"):
        raise ApiError(
            422,
            "permission must be one of " + ", ".join(PERMISSIONS) + "; type must be User or Bot",
        )
    user = c.state.add_user(field(body, "login", str), type=kind, permission=permission)
    return json_response(
        {"login": user.login, "id": user.id, "type": user.type, "permission": user.permission},
        status=201,
    )


@routes.get("/_sandbox/users")
async def list_users(request: web.Request) -> web.Response:
    """Every user the double knows."""
    users = ctx(request).state.users.values()
    return json_response(
        [{"login": u.login, "id": u.id, "type": u.type, "permission": u.permission} for u in users]
    )


@routes.post("/_sandbox/teams")
async def create_team(request: web.Request) -> web.Response:
    """Create or replace a team: org, slug, members (logins, or login to member/maintainer)."""
    c = ctx(request)
    body = await read_body(request)
    org, slug = field(body, "org", str), field(body, "slug", str)
    raw = field(body, "members", (list, dict), [])
    members = dict.fromkeys(raw, "member") if isinstance(raw, list) else dict(raw)
    if any(r not in ("member", "maintainer") for r in members.values()):
        raise ApiError(422, "a member's role is member or maintainer")
    for login in members:
        c.state.ensure_user(login)
    key = (org.lower(), slug.lower())
    old = c.state.teams.get(key)
    team = Team(org=org, slug=slug, id=old.id if old else c.state.next_id(), members=members)
    c.state.teams[key] = team
    return json_response({"org": org, "slug": slug, "id": team.id, "members": members}, status=201)


# ---- git: branches and pushes ------------------------------------------------------
@routes.post("/_sandbox/branches")
async def create_branch(request: web.Request) -> web.Response:
    """Create a branch from a ref, optionally with a commit of `files`; sends `push`."""
    c = ctx(request)
    body = await read_body(request)
    name = field(body, "name", str)
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", name) or ".." in name or name.endswith(("/", ".lock")):
        raise ApiError(422, f"invalid branch name: {name!r}")
    sha, futures = await actions.push_files(
        c,
        name,
        files_of(body),
        message=field(body, "message", str, f"Create {name}"),
        user=field(body, "user", str, DEFAULT_USER),
        create_from=field(body, "from", str, "main"),
    )
    return json_response(
        {"name": name, "sha": sha, "deliveries": await settle(futures)}, status=201
    )


@routes.post("/_sandbox/push")
async def push(request: web.Request) -> web.Response:
    """Commit `files` onto an existing branch (main included); sends push and synchronize."""
    c = ctx(request)
    body = await read_body(request)
    branch = field(body, "branch", str)
    sha, futures = await actions.push_files(
        c,
        branch,
        files_of(body),
        message=field(body, "message", str, "Update files"),
        user=field(body, "user", str, DEFAULT_USER),
    )
    return json_response(
        {"branch": branch, "sha": sha, "deliveries": await settle(futures)}, status=201
    )


# ---- pull requests -----------------------------------------------------------------
@routes.post("/_sandbox/pulls")
async def open_pull(request: web.Request) -> web.Response:
    """Open a pull request; answers its number."""
    c = ctx(request)
    body = await read_body(request)
    head = field(body, "head", str)
    pull, futures = await actions.open_pull(
        c,
        head=head,
        base=field(body, "base", str, "main"),
        title=field(body, "title", str, head),
        body=field(body, "body", str, None),
        user=field(body, "user", str, DEFAULT_USER),
        draft=field(body, "draft", bool, False),
        fork=field(body, "fork", bool, False),
    )
    return json_response(
        {
            "number": pull.number,
            "head_sha": pull.head_sha,
            "url": f"{c.shapes.repo_url()}/pulls/{pull.number}",
            "deliveries": await settle(futures),
        },
        status=201,
    )


@routes.get("/_sandbox/pulls/{number}")
async def get_pull(request: web.Request) -> web.Response:
    """The pull request's whole visible state: comments, checks, labels, reviews, deployments."""
    c = ctx(request)
    return json_response(pull_view(c, pull_of(c, request)))


@routes.patch("/_sandbox/pulls/{number}")
async def update_pull(request: web.Request) -> web.Response:
    """Close or reopen (`state`), edit `title`/`body`/`base`, or set `draft`."""
    c = ctx(request)
    pull = pull_of(c, request)
    body = await read_body(request)
    if body.get("state") not in (None, "open", "closed"):
        raise ApiError(422, "state is open or closed")
    changes: dict[str, Any] = {
        k: body[k] for k in ("state", "title", "body", "base", "draft") if k in body
    }
    futures = await actions.update_pull(c, pull, changes, field(body, "user", str, DEFAULT_USER))
    view = pull_view(c, pull)
    view["deliveries"] = await settle(futures)
    return json_response(view)


@routes.post("/_sandbox/pulls/{number}/commits")
async def push_to_pull(request: web.Request) -> web.Response:
    """Push a commit onto the pull's head branch; sends push and `synchronize`."""
    c = ctx(request)
    pull = pull_of(c, request)
    body = await read_body(request)
    sha, futures = await actions.push_files(
        c,
        pull.head_ref,
        files_of(body),
        message=field(body, "message", str, "Update files"),
        user=field(body, "user", str, pull.user),
    )
    return json_response({"sha": sha, "deliveries": await settle(futures)}, status=201)


@routes.post("/_sandbox/pulls/{number}/comments")
async def comment(request: web.Request) -> web.Response:
    """Comment on the pull as a named user; sends `issue_comment` created."""
    c = ctx(request)
    pull = pull_of(c, request)
    body = await read_body(request)
    made, futures = actions.add_comment(
        c, pull, field(body, "user", str, DEFAULT_USER), field(body, "body", str)
    )
    return json_response({"id": made.id, "deliveries": await settle(futures)}, status=201)


def _comment(c: Context, request: web.Request) -> Any:
    ident = request.match_info["id"]
    found = c.state.comments.get(int(ident)) if ident.isdigit() else None
    if found is None:
        raise ApiError(404, f"no comment {ident}")
    return found


@routes.patch("/_sandbox/comments/{id}")
async def edit_comment(request: web.Request) -> web.Response:
    """Edit a comment's body as a user; sends `issue_comment` edited."""
    c = ctx(request)
    found = _comment(c, request)
    body = await read_body(request)
    futures = actions.edit_comment(
        c, found, field(body, "body", str), field(body, "user", str, found.user)
    )
    return json_response({"id": found.id, "deliveries": await settle(futures)})


@routes.delete("/_sandbox/comments/{id}")
async def delete_comment(request: web.Request) -> web.Response:
    """Delete a comment (`?user=` who deletes it); sends `issue_comment` deleted."""
    c = ctx(request)
    found = _comment(c, request)
    futures = actions.delete_comment(c, found, request.query.get("user", found.user))
    return json_response({"id": found.id, "deliveries": await settle(futures)})


@routes.post("/_sandbox/pulls/{number}/labels")
async def labels(request: web.Request) -> web.Response:
    """Add and remove labels as a user; one labeled/unlabeled event per change."""
    c = ctx(request)
    pull = pull_of(c, request)
    body = await read_body(request)
    add, remove = field(body, "add", list, []), field(body, "remove", list, [])
    if not all(isinstance(n, str) and n for n in add + remove):
        raise ApiError(422, "labels are non-empty strings")
    futures = actions.change_labels(
        c, pull, add=add, remove=remove, sender=field(body, "user", str, DEFAULT_USER)
    )
    return json_response({"labels": list(pull.labels), "deliveries": await settle(futures)})


@routes.post("/_sandbox/pulls/{number}/reviews")
async def review(request: web.Request) -> web.Response:
    """Submit a review (APPROVED, CHANGES_REQUESTED, COMMENTED) as a user."""
    c = ctx(request)
    pull = pull_of(c, request)
    body = await read_body(request)
    state = field(body, "state", str, "APPROVED").upper()
    if state not in ("APPROVED", "CHANGES_REQUESTED", "COMMENTED"):
        raise ApiError(422, "state is APPROVED, CHANGES_REQUESTED or COMMENTED")
    made, futures = actions.submit_review(
        c, pull, field(body, "user", str, DEFAULT_USER), state, field(body, "body", str, "")
    )
    return json_response({"id": made.id, "deliveries": await settle(futures)}, status=201)


@routes.post("/_sandbox/pulls/{number}/merge")
async def merge(request: web.Request) -> web.Response:
    """Merge with a merge commit (409 on conflict); sends closed (merged) and the push."""
    c = ctx(request)
    pull = pull_of(c, request)
    body = await read_body(request)
    sha, futures = await actions.merge(
        c, pull, field(body, "user", str, DEFAULT_USER), field(body, "message", str, None)
    )
    return json_response({"merged": True, "sha": sha, "deliveries": await settle(futures)})


# ---- checks ------------------------------------------------------------------------
@routes.post("/_sandbox/check-runs/{id}/rerequest")
async def rerequest_check_run(request: web.Request) -> web.Response:
    """ "Re-run" on a completed check run as a user; sends `check_run` rerequested."""
    c = ctx(request)
    ident = request.match_info["id"]
    run = c.state.check_runs.get(int(ident)) if ident.isdigit() else None
    if run is None:
        raise ApiError(404, f"no check run {ident}")
    if run.status != "completed":
        raise ApiError(422, f"check run {ident} is {run.status}: only a completed run is re-run")
    body = await read_body(request)
    user = c.state.ensure_user(field(body, "user", str, DEFAULT_USER)).login
    future = c.hooks.enqueue("check_run", payloads.check_run_rerequested(c.shapes, run, user))
    return json_response({"id": run.id, "deliveries": await settle([future])})
