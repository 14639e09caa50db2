"""People endpoints: repository permission of a user, team membership, user profiles."""

from __future__ import annotations

from aiohttp import web

from bot.sandbox.github.context import ctx, repo_owner
from bot.sandbox.github.http import json_response, not_found
from bot.sandbox.github.shapes import ROLE_OF

routes = web.RouteTableDef()


@routes.get("/repos/{owner}/{repo}/collaborators/{username}/permission")
async def get_permission(request: web.Request) -> web.Response:
    """GET .../collaborators/{username}/permission: `permission` and the finer `role_name`."""
    repo_owner(request)
    c = ctx(request)
    user = c.state.user(request.match_info["username"])
    if user is None:
        raise not_found()
    permission, role = ROLE_OF[user.permission]
    rank = ("none", "read", "triage", "write", "maintain", "admin").index(user.permission)
    collaborator = c.shapes.user(user) or {}
    collaborator.update(
        permissions={
            "pull": rank >= 1,
            "triage": rank >= 2,
            "push": rank >= 3,
            "maintain": rank >= 4,
            "admin": rank >= 5,
        },
        role_name=role,
    )
    return json_response({"permission": permission, "role_name": role, "user": collaborator})


@routes.get("/orgs/{org}/teams/{team_slug}/memberships/{username}")
async def get_membership(request: web.Request) -> web.Response:
    """GET /orgs/{org}/teams/{team_slug}/memberships/{username}: 404 unless a member."""
    c = ctx(request)
    key = (request.match_info["org"].lower(), request.match_info["team_slug"].lower())
    team = c.state.teams.get(key)
    login = request.match_info["username"].lower()
    role = None
    if team is not None:
        role = next((r for m, r in team.members.items() if m.lower() == login), None)
    if team is None or role is None:
        raise not_found()
    url = f"{c.shapes.api}/teams/{team.id}/memberships/{request.match_info['username']}"
    return json_response({"url": url, "role": role, "state": "active"})


@routes.get("/users/{username}")
async def get_user(request: web.Request) -> web.Response:
    """GET /users/{username}."""
    c = ctx(request)
    user = c.state.user(request.match_info["username"])
    if user is None:
        raise not_found()
    return json_response(c.shapes.public_user(user))
