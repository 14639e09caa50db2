"""Issue endpoints on pull requests: comments, reactions and labels (made as the app's bot)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from bot.sandbox.github import actions
from bot.sandbox.github.context import Context, ctx, repo_owner
from bot.sandbox.github.http import ApiError, json_response, not_found, paginate, read_json
from bot.sandbox.github.rest_pulls import pull_or_404
from bot.sandbox.github.state import Comment, Reaction, now

routes = web.RouteTableDef()


def comment_or_404(c: Context, ident: str) -> Comment:
    """The issue comment `ident`, or GitHub's 404."""
    comment = c.state.comments.get(int(ident)) if ident.isdigit() else None
    if comment is None:
        raise not_found()
    return comment


@routes.get("/repos/{owner}/{repo}/issues/{issue_number}/comments")
async def list_comments(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/issues/{n}/comments?since= (oldest first, paginated)."""
    repo_owner(request)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["issue_number"])
    found = sorted(
        (x for x in c.state.comments.values() if x.number == pull.number), key=lambda x: x.id
    )
    if "since" in request.query:
        try:
            since = dt.datetime.fromisoformat(request.query["since"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(422, "Validation Failed") from exc
        found = [x for x in found if x.updated_at >= since]
    page, headers = paginate(request, found)
    return json_response([c.shapes.comment(x) for x in page], headers=headers)


@routes.post("/repos/{owner}/{repo}/issues/{issue_number}/comments")
async def create_comment(request: web.Request) -> web.Response:
    """POST /repos/{owner}/{repo}/issues/{n}/comments: a comment by the app's bot user."""
    repo_owner(request, write=True)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["issue_number"])
    body = await read_json(request)
    comment, _ = actions.add_comment(c, pull, c.state.app.bot_login, body["body"], via_app=True)
    return json_response(c.shapes.comment(comment), status=201)


@routes.get("/repos/{owner}/{repo}/issues/comments/{comment_id}")
async def get_comment(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/issues/comments/{id}."""
    repo_owner(request)
    c = ctx(request)
    return json_response(c.shapes.comment(comment_or_404(c, request.match_info["comment_id"])))


@routes.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}")
async def update_comment(request: web.Request) -> web.Response:
    """PATCH /repos/{owner}/{repo}/issues/comments/{id}: edit the body."""
    repo_owner(request, write=True)
    c = ctx(request)
    comment = comment_or_404(c, request.match_info["comment_id"])
    body = await read_json(request)
    actions.edit_comment(c, comment, body["body"], c.state.app.bot_login)
    return json_response(c.shapes.comment(comment))


@routes.delete("/repos/{owner}/{repo}/issues/comments/{comment_id}")
async def delete_comment(request: web.Request) -> web.Response:
    """DELETE /repos/{owner}/{repo}/issues/comments/{id}: 204."""
    repo_owner(request, write=True)
    c = ctx(request)
    comment = comment_or_404(c, request.match_info["comment_id"])
    actions.delete_comment(c, comment, c.state.app.bot_login)
    return web.Response(status=204)


@routes.post("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
async def create_reaction(request: web.Request) -> web.Response:
    """POST .../issues/comments/{id}/reactions: 201 when new, 200 when it already existed."""
    repo_owner(request, write=True)
    c = ctx(request)
    comment = comment_or_404(c, request.match_info["comment_id"])
    content = (await read_json(request))["content"]
    user = c.state.app.bot_login
    for existing in comment.reactions:
        if existing.user == user and existing.content == content:
            return json_response(c.shapes.reaction(existing), status=200)
    reaction = Reaction(id=c.state.next_id(), user=user, content=content, created_at=now())
    comment.reactions.append(reaction)
    return json_response(c.shapes.reaction(reaction), status=201)


@routes.get("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
async def list_reactions(request: web.Request) -> web.Response:
    """GET .../issues/comments/{id}/reactions?content=."""
    repo_owner(request)
    c = ctx(request)
    comment = comment_or_404(c, request.match_info["comment_id"])
    wanted = request.query.get("content")
    found = [r for r in comment.reactions if wanted is None or r.content == wanted]
    page, headers = paginate(request, found)
    return json_response([c.shapes.reaction(r) for r in page], headers=headers)


@routes.delete("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions/{reaction_id}")
async def delete_reaction(request: web.Request) -> web.Response:
    """DELETE .../issues/comments/{id}/reactions/{reaction_id}: 204."""
    repo_owner(request, write=True)
    c = ctx(request)
    comment = comment_or_404(c, request.match_info["comment_id"])
    ident = request.match_info["reaction_id"]
    kept = [r for r in comment.reactions if str(r.id) != ident]
    if len(kept) == len(comment.reactions):
        raise not_found()
    comment.reactions[:] = kept
    return web.Response(status=204)


def _label_names(body: dict[str, Any]) -> list[str]:
    raw: Any = body.get("__array__", body.get("labels", []))
    names = []
    for item in raw if isinstance(raw, list) else [raw]:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise ApiError(422, "Validation Failed")
        names.append(name.strip())
    return names


@routes.post("/repos/{owner}/{repo}/issues/{issue_number}/labels")
async def add_labels(request: web.Request) -> web.Response:
    """POST /repos/{owner}/{repo}/issues/{n}/labels: add labels; answers all of the issue's."""
    repo_owner(request, write=True)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["issue_number"])
    names = _label_names(await read_json(request))
    actions.change_labels(c, pull, add=names, remove=[], sender=c.state.app.bot_login)
    return json_response([c.shapes.label(c.state.label(n)) for n in pull.labels])


@routes.delete("/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}")
async def remove_label(request: web.Request) -> web.Response:
    """DELETE /repos/{owner}/{repo}/issues/{n}/labels/{name}: the labels that remain."""
    repo_owner(request, write=True)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["issue_number"])
    name = request.match_info["name"]
    if name.lower() not in (n.lower() for n in pull.labels):
        raise ApiError(404, "Label does not exist")
    actions.change_labels(c, pull, add=[], remove=[name], sender=c.state.app.bot_login)
    return json_response([c.shapes.label(c.state.label(n)) for n in pull.labels])
