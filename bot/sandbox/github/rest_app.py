"""App endpoints: the app itself, its installation, installation tokens, manifest conversions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.sandbox.github.context import ctx, repo_owner
from bot.sandbox.github.http import ApiError, auth_kind, json_response, not_found, read_json
from bot.sandbox.github.shapes import APP_PERMISSIONS
from bot.sandbox.github.state import iso, now

routes = web.RouteTableDef()
MANIFEST_CODE_LIFETIME = 3600  # seconds: "the code expires after one hour"


@routes.get("/app")
@auth_kind("jwt")
async def get_app(request: web.Request) -> web.Response:
    """GET /app: the authenticated app."""
    return json_response(ctx(request).shapes.integration())


@routes.get("/app/installations")
@auth_kind("jwt")
async def list_installations(request: web.Request) -> web.Response:
    """GET /app/installations: the app's one installation."""
    return json_response([ctx(request).shapes.installation()])


@routes.get("/installation/repositories")
async def installation_repositories(request: web.Request) -> web.Response:
    """GET /installation/repositories: what an installation token can reach."""
    return json_response({"total_count": 1, "repositories": [ctx(request).shapes.repository()]})


@routes.get("/repos/{owner}/{repo}/installation")
@auth_kind("jwt")
async def get_repo_installation(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/installation: the app's installation on the repository."""
    if repo_owner(request) is not None:
        raise not_found()  # the app is installed on the repository, not on forks
    return json_response(ctx(request).shapes.installation())


@routes.post("/app/installations/{installation_id}/access_tokens")
@auth_kind("jwt")
async def create_token(request: web.Request) -> web.Response:
    """POST /app/installations/{id}/access_tokens: a `ghs_` token valid for one hour."""
    c = ctx(request)
    if request.match_info["installation_id"] != str(c.state.app.installation_id):
        raise not_found()
    body = await read_json(request)
    names = body.get("repositories") or []
    ids = body.get("repository_ids") or []
    if any(n.lower() != c.state.name.lower() for n in names) or any(
        i != c.state.repo_id for i in ids
    ):
        raise ApiError(
            422,
            "There is at least one repository that does not exist or is not accessible to "
            "the parent installation.",
        )
    wanted = body.get("permissions") or {}
    granted = dict(APP_PERMISSIONS)
    for scope, level in wanted.items():
        have = granted.get(scope)
        if have is None or (level == "write" and have == "read"):
            raise ApiError(422, "The permissions requested are not granted to this installation.")
    token, expires = c.tokens.mint(c.state.app.installation_id, now())
    answer: dict[str, Any] = {
        "token": token,
        "expires_at": iso(expires),
        "permissions": {k: wanted.get(k, v) for k, v in granted.items()},
        "repository_selection": "selected",
    }
    if names or ids:
        answer["repositories"] = [c.shapes.repository()]
    return json_response(answer, status=201)


@routes.post("/app-manifests/{code}/conversions")
@auth_kind("none")
async def convert_manifest(request: web.Request) -> web.Response:
    """POST /app-manifests/{code}/conversions: the app's credentials for a one-time code."""
    c = ctx(request)
    entry = c.state.manifest_codes.pop(request.match_info["code"], None)
    if entry is None or (now() - entry[0]).total_seconds() > MANIFEST_CODE_LIFETIME:
        raise not_found()
    _, manifest = entry
    app = c.state.app
    name = manifest.get("name")
    if isinstance(name, str) and name.strip():
        app.name = name.strip()
    hook = manifest.get("hook_attributes") or {}
    if isinstance(hook, dict) and isinstance(hook.get("url"), str) and not app.webhook_url:
        app.webhook_url = hook["url"]  # as GitHub would, point the app's webhook at it
    answer = c.shapes.integration()
    answer.update(
        client_id=app.client_id,
        client_secret=app.client_secret,
        webhook_secret=app.webhook_secret,
        pem=app.private_key_pem,
    )
    return json_response(answer, status=201)
