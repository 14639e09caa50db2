"""The control API under `/_sandbox/`: act as people on the repository and read what happened.

A stable public contract (documented in the README): demos, users and outside checks
drive the double through it. Every mutating call waits until the webhooks it causes
have been answered and lists them under `deliveries`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.sandbox.github import actions, payloads
from bot.sandbox.github.context import Context, ctx
from bot.sandbox.github.http import ApiError, json_response
from bot.sandbox.github.state import PERMISSIONS, Delivery, Fault, Team, now
from bot.sandbox.github.views import deployment_view, pull_view

routes = web.RouteTableDef()
DEFAULT_USER = "octocat"  # a user with write permission, created at start
_REQUIRED = object()


@web.middleware
async def control_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Map ApiError and unknown control routes to JSON errors."""
    if not request.path.startswith("/_sandbox"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(
            {"message": exc.message, "errors": exc.errors or []}, status=exc.status
        )
    except web.HTTPNotFound:
        return json_response({"message": f"no control route {request.path}"}, status=404)
    except web.HTTPMethodNotAllowed as exc:
        return json_response(
            {"message": f"method not allowed: {request.method}"}, status=exc.status
        )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _get(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED
) -> Any:
    if name not in body or body[name] is None:
        if default is _REQUIRED:
            raise ApiError(422, f'"{name}" is required')
        return default
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiError(422, f'"{name}" has the wrong type')
    return value


def _files(body: dict[str, Any]) -> dict[str, str | None]:
    files: dict[str, str | None] = _get(body, "files", dict, {})
    for path, content in files.items():
        if content is not None and not isinstance(content, str):
            raise ApiError(422, f'files["{path}"] must be a string, or null to delete')
    return files


async def _settle(futures: list[asyncio.Future[Delivery]]) -> list[dict[str, Any]]:
    done = await asyncio.gather(*futures)
    return [d.summary() for d in done]


def _pull(c: Context, request: web.Request) -> Any:
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
    body = await _body(request)
    permission = _get(body, "permission", str, "none")
    kind = _get(body, "type", str, "User")
    if permission not in PERMISSIONS or kind not in ("User", "Bot"):
        raise ApiError(
            422,
            "permission must be one of " + ", ".join(PERMISSIONS) + "; type must be User or Bot",
        )
    user = c.state.add_user(_get(body, "login", str), type=kind, permission=permission)
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
    body = await _body(request)
    org, slug = _get(body, "org", str), _get(body, "slug", str)
    raw = _get(body, "members", (list, dict), [])
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
    body = await _body(request)
    name = _get(body, "name", str)
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", name) or ".." in name or name.endswith(("/", ".lock")):
        raise ApiError(422, f"invalid branch name: {name!r}")
    sha, futures = await actions.push_files(
        c,
        name,
        _files(body),
        message=_get(body, "message", str, f"Create {name}"),
        user=_get(body, "user", str, DEFAULT_USER),
        create_from=_get(body, "from", str, "main"),
    )
    return json_response(
        {"name": name, "sha": sha, "deliveries": await _settle(futures)}, status=201
    )


@routes.post("/_sandbox/push")
async def push(request: web.Request) -> web.Response:
    """Commit `files` onto an existing branch (main included); sends push and synchronize."""
    c = ctx(request)
    body = await _body(request)
    branch = _get(body, "branch", str)
    sha, futures = await actions.push_files(
        c,
        branch,
        _files(body),
        message=_get(body, "message", str, "Update files"),
        user=_get(body, "user", str, DEFAULT_USER),
    )
    return json_response(
        {"branch": branch, "sha": sha, "deliveries": await _settle(futures)}, status=201
    )


# ---- pull requests -----------------------------------------------------------------
@routes.post("/_sandbox/pulls")
async def open_pull(request: web.Request) -> web.Response:
    """Open a pull request; answers its number."""
    c = ctx(request)
    body = await _body(request)
    head = _get(body, "head", str)
    pull, futures = await actions.open_pull(
        c,
        head=head,
        base=_get(body, "base", str, "main"),
        title=_get(body, "title", str, head),
        body=_get(body, "body", str, None),
        user=_get(body, "user", str, DEFAULT_USER),
        draft=_get(body, "draft", bool, False),
        fork=_get(body, "fork", bool, False),
    )
    return json_response(
        {
            "number": pull.number,
            "head_sha": pull.head_sha,
            "url": f"{c.shapes.repo_url()}/pulls/{pull.number}",
            "deliveries": await _settle(futures),
        },
        status=201,
    )


@routes.get("/_sandbox/pulls/{number}")
async def get_pull(request: web.Request) -> web.Response:
    """The pull request's whole visible state: comments, checks, labels, reviews, deployments."""
    c = ctx(request)
    return json_response(pull_view(c, _pull(c, request)))


@routes.patch("/_sandbox/pulls/{number}")
async def update_pull(request: web.Request) -> web.Response:
    """Close or reopen (`state`), edit `title`/`body`/`base`, or set `draft`."""
    c = ctx(request)
    pull = _pull(c, request)
    body = await _body(request)
    if body.get("state") not in (None, "open", "closed"):
        raise ApiError(422, "state is open or closed")
    changes: dict[str, Any] = {
        k: body[k] for k in ("state", "title", "body", "base", "draft") if k in body
    }
    futures = await actions.update_pull(c, pull, changes, _get(body, "user", str, DEFAULT_USER))
    view = pull_view(c, pull)
    view["deliveries"] = await _settle(futures)
    return json_response(view)


@routes.post("/_sandbox/pulls/{number}/commits")
async def push_to_pull(request: web.Request) -> web.Response:
    """Push a commit onto the pull's head branch; sends push and `synchronize`."""
    c = ctx(request)
    pull = _pull(c, request)
    body = await _body(request)
    sha, futures = await actions.push_files(
        c,
        pull.head_ref,
        _files(body),
        message=_get(body, "message", str, "Update files"),
        user=_get(body, "user", str, pull.user),
    )
    return json_response({"sha": sha, "deliveries": await _settle(futures)}, status=201)


@routes.post("/_sandbox/pulls/{number}/comments")
async def comment(request: web.Request) -> web.Response:
    """Comment on the pull as a named user; sends `issue_comment` created."""
    c = ctx(request)
    pull = _pull(c, request)
    body = await _body(request)
    made, futures = actions.add_comment(
        c, pull, _get(body, "user", str, DEFAULT_USER), _get(body, "body", str)
    )
    return json_response({"id": made.id, "deliveries": await _settle(futures)}, status=201)


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
    body = await _body(request)
    futures = actions.edit_comment(
        c, found, _get(body, "body", str), _get(body, "user", str, found.user)
    )
    return json_response({"id": found.id, "deliveries": await _settle(futures)})


@routes.delete("/_sandbox/comments/{id}")
async def delete_comment(request: web.Request) -> web.Response:
    """Delete a comment (`?user=` who deletes it); sends `issue_comment` deleted."""
    c = ctx(request)
    found = _comment(c, request)
    futures = actions.delete_comment(c, found, request.query.get("user", found.user))
    return json_response({"id": found.id, "deliveries": await _settle(futures)})


@routes.post("/_sandbox/pulls/{number}/labels")
async def labels(request: web.Request) -> web.Response:
    """Add and remove labels as a user; one labeled/unlabeled event per change."""
    c = ctx(request)
    pull = _pull(c, request)
    body = await _body(request)
    add, remove = _get(body, "add", list, []), _get(body, "remove", list, [])
    if not all(isinstance(n, str) and n for n in add + remove):
        raise ApiError(422, "labels are non-empty strings")
    futures = actions.change_labels(
        c, pull, add=add, remove=remove, sender=_get(body, "user", str, DEFAULT_USER)
    )
    return json_response({"labels": list(pull.labels), "deliveries": await _settle(futures)})


@routes.post("/_sandbox/pulls/{number}/reviews")
async def review(request: web.Request) -> web.Response:
    """Submit a review (APPROVED, CHANGES_REQUESTED, COMMENTED) as a user."""
    c = ctx(request)
    pull = _pull(c, request)
    body = await _body(request)
    state = _get(body, "state", str, "APPROVED").upper()
    if state not in ("APPROVED", "CHANGES_REQUESTED", "COMMENTED"):
        raise ApiError(422, "state is APPROVED, CHANGES_REQUESTED or COMMENTED")
    made, futures = actions.submit_review(
        c, pull, _get(body, "user", str, DEFAULT_USER), state, _get(body, "body", str, "")
    )
    return json_response({"id": made.id, "deliveries": await _settle(futures)}, status=201)


@routes.post("/_sandbox/pulls/{number}/merge")
async def merge(request: web.Request) -> web.Response:
    """Merge with a merge commit (409 on conflict); sends closed (merged) and the push."""
    c = ctx(request)
    pull = _pull(c, request)
    body = await _body(request)
    sha, futures = await actions.merge(
        c, pull, _get(body, "user", str, DEFAULT_USER), _get(body, "message", str, None)
    )
    return json_response({"merged": True, "sha": sha, "deliveries": await _settle(futures)})


# ---- webhooks ----------------------------------------------------------------------
def _since(request: web.Request) -> int:
    try:
        return max(0, int(request.query.get("since", "0")))
    except ValueError as exc:
        raise ApiError(422, "since is an index") from exc


@routes.get("/_sandbox/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    """Webhooks sent, oldest first (`?since=<index>`)."""
    found = ctx(request).state.deliveries[_since(request) :]
    return json_response([d.summary() for d in found])


@routes.get("/_sandbox/deliveries/{index}")
async def delivery(request: web.Request) -> web.Response:
    """One delivery by index, with its payload."""
    found = ctx(request).state.deliveries
    index = request.match_info["index"]
    if not index.isdigit() or int(index) >= len(found):
        raise ApiError(404, f"no delivery {index}")
    item = found[int(index)]
    return json_response({**item.summary(), "payload": json.loads(item.payload)})


@routes.post("/_sandbox/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """Send a delivery again with the same `X-GitHub-Delivery`."""
    c = ctx(request)
    guid = _get(await _body(request), "delivery", str)
    try:
        again = await c.hooks.redeliver(guid)
    except KeyError as exc:
        raise ApiError(404, f"no delivery {guid}") from exc
    return json_response(again.summary())


@routes.post("/_sandbox/ping")
async def ping(request: web.Request) -> web.Response:
    """Send a `ping` event, as GitHub does when an app's webhook is set up."""
    c = ctx(request)
    sent = await c.hooks.send("ping", payloads.ping(c.shapes))
    return json_response(sent.summary())


@routes.post("/_sandbox/webhook")
async def set_webhook(request: web.Request) -> web.Response:
    """Change where webhooks go (`url`) and how they are signed (`secret`)."""
    c = ctx(request)
    body = await _body(request)
    if "url" in body:
        c.state.app.webhook_url = _get(body, "url", str, None)
    if "secret" in body:
        c.state.app.webhook_secret = _get(body, "secret", str, None)
    return json_response({"url": c.state.app.webhook_url})


# ---- records -----------------------------------------------------------------------
@routes.get("/_sandbox/deployments")
async def deployments(request: web.Request) -> web.Response:
    """Every deployment with its statuses, oldest first."""
    c = ctx(request)
    return json_response([deployment_view(d) for d in c.state.deployments.values()])


@routes.get("/_sandbox/requests")
async def requests(request: web.Request) -> web.Response:
    """Every REST request the double answered, oldest first (`?since=<index>`)."""
    found = ctx(request).state.requests[_since(request) :]
    return json_response([r.to_dict() for r in found])


@routes.get("/_sandbox/violations")
async def violations(request: web.Request) -> web.Response:
    """Requests the OpenAPI checker (when plugged in) found the real API would reject."""
    return json_response(ctx(request).state.violations)


# ---- faults, tokens, app manifests -------------------------------------------------
@routes.post("/_sandbox/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Fail the next `times` requests matching `method` and `path` (a regex)."""
    c = ctx(request)
    body = await _body(request)
    try:
        pattern = re.compile(_get(body, "path", str, ".*"))
    except re.error as exc:
        raise ApiError(422, f"path is not a regular expression: {exc}") from exc
    status = _get(body, "status", int, None)
    delay = _get(body, "delay_seconds", (int, float), 0)
    if status is None and not delay:
        raise ApiError(422, "a fault needs a status, a delay_seconds, or both")
    headers = _get(body, "headers", dict, {})
    fault = Fault(
        id=c.state.next_id(),
        method=_get(body, "method", str, "*").upper(),
        path=pattern,
        status=status,
        times=_get(body, "times", int, 1),
        delay_seconds=float(delay),
        headers={str(k): str(v) for k, v in headers.items()},
        body=body.get("body"),
    )
    c.state.faults.append(fault)
    return json_response(fault.to_dict(), status=201)


@routes.get("/_sandbox/faults")
async def list_faults(request: web.Request) -> web.Response:
    """Faults with their remaining counts."""
    return json_response([f.to_dict() for f in ctx(request).state.faults])


@routes.delete("/_sandbox/faults")
async def clear_faults(request: web.Request) -> web.Response:
    """Remove every fault."""
    state = ctx(request).state
    count = len(state.faults)
    state.faults.clear()
    return json_response({"cleared": count})


@routes.post("/_sandbox/tokens/expire")
async def expire_tokens(request: web.Request) -> web.Response:
    """Expire every installation token now (the next call with one answers 401)."""
    return json_response({"expired": ctx(request).tokens.expire_all()})


@routes.post("/_sandbox/app-manifests")
async def mint_manifest_code(request: web.Request) -> web.Response:
    """A one-time code for `POST /app-manifests/{code}/conversions` (optional `manifest`)."""
    c = ctx(request)
    body = await _body(request)
    code = secrets.token_hex(10)
    c.state.manifest_codes[code] = (now(), _get(body, "manifest", dict, {}))
    return json_response({"code": code}, status=201)
